"""Card-data protection: AES DUKPT (ANSI X9.24-3-2017), fleet card tokens, key files.

The protection module (`terminal.protection.module`) is, with the card kernel, the only place
where clear card data lives, in memory, for one transaction. Everything that leaves it is a
token, a masked PAN, or a blob encrypted under a DUKPT working key. The gateway may import
`terminal.protection.host` to decrypt blobs; nothing here imports the gateway.
"""
