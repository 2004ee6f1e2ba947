"""The EMV contactless card kernel: BER-TLV, ISO 7816-4 APDUs, and the kernel that reads a
payment card over a `transceive` callable. Pure: no I/O, clock or randomness
(docs/architecture.md, "Layers")."""
