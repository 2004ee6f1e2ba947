"""AES DUKPT against the test vectors published with ANSI X9.24-3-2017.

Source of every expected value below: ASC X9, "ANSI X9.24-3-2017 Supplement: Test Vectors"
(file X9.24-3-2017-Test-Vectors-20180129-1.pdf, published by ASC X9 on its page
"X9.24 Part 3 Test Vectors", x9.org/standards/x9-24-part-3-test-vectors/), inputs
BDK-128 = FEDCBA9876543210F1F1F1F1F1F1F1F1, BDK-256 = BDK-128 twice, Initial Key ID =
1234567890123456. The initial keys also appear in the standard's Annex B.1 example.

The initial and transaction (derivation) keys were transcribed from that supplement by the
openemv/dukpt project (github.com/openemv/dukpt, files test/dukpt_aes128_test.c: "page 2",
"page 5", "middle of page 6"; test/dukpt_aes256_test.c: "bottom of page 7", "middle of
page 10", "page 12"); the working keys are the supplement's "AES-128 keys from AES-128 BDK",
"AES-128 keys from AES-256 BDK" and "AES-256 keys from AES-256 BDK" sections, checked
against several independent public transcriptions that agree digit for digit.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from terminal.errors import KeyMaterialError
from terminal.protection.dukpt import (
    MAX_COUNTER,
    DukptOriginator,
    InitialKeyId,
    KeyType,
    KeyUsage,
    Ksn,
    derivation_data,
    derive_initial_key,
    derive_key,
    derive_transaction_key,
    host_working_key,
    is_valid_counter,
    next_counter,
)

BDK_128 = bytes.fromhex("FEDCBA9876543210F1F1F1F1F1F1F1F1")
BDK_256 = BDK_128 * 2
IKID = InitialKeyId.from_hex("1234567890123456")
IK_128 = bytes.fromhex("1273671EA26AC29AFA4D1084127652A1")
IK_256 = bytes.fromhex("CE9CE0C101D1138F97FB6CAD4DF045A7083D4EAE2D35A31789D01CCF0949550F")

# Transaction (intermediate derivation) keys per counter, AES-128 BDK.
TXN_128 = {
    0x00000001: "4F21B565BAD9835E112B6465635EAE44",
    0x00000002: "2F34D68DE10F68D38091A73B9E7C437C",
    0x00000003: "031504E530365CF81264238540518318",
    0x00000004: "0EEFC7ADA628BA68878DA9165A8A1887",
    0x00000005: "C2A7AC328A5DA2D6002D62465BFC028B",
    0x00000006: "D30F7D9351DA58448A2F5E92B4EE3B7D",
    0x00000007: "A8253CEED9AC042C54F75D35C8352278",
    0x00000008: "718EE6CF0B27E53D5F7AF99C4D8146A2",
    0x0001FFFE: "E21E8C8D347F8561A2BE752DAA85A111",
    0x00020000: "F7AE9025468A25D37B7249CFFED224C8",
    0x00020001: "692C8EA4013645135B36497131DF9D2C",
    0xFFFE2000: "48E585B694EB0B18D5C35443E163C0BA",
    0xFFFE4000: "396C2C7CA1EA701C03B86B7D41F0C562",
    0xFFFE8000: "0387625F189B58AE03EF0E8CCA41105E",
    0xFFFF0000: "F6BA59389BD14A9855BE9727E7C52E3C",
}

# Transaction keys per counter, AES-256 BDK.
TXN_256 = {
    0x00000001: "54AC2B32B145EA4A554CB8BC44B17467063A799856B1CCC2A138D36E8DBF78B3",
    0x00000002: "5DD5A0253842BBBE1D7C0DA27021412C6F1FAB53FB928DEAE56DA06090A9DE97",
    0x00000003: "8EEEF7C464AE415BB1D73FAED21993CD669F7999092A579EC6DD3CC680C65171",
    0x00000004: "C18CBED570B3B89ECADA7CEC9C224CD5A86ECF3DE377D3EFAB720F8C4D76B9D0",
    0x00000005: "6B3C3C93307151C25DC2309456F01C5C3108DAD571C321899A9B7E0C009FD2EB",
    0x00000006: "B8BB61AE3E2D5CD8C699E0C578FB2C7B89B0C0CF02DBAB60864D8049C986C844",
    0x00000007: "88D0ACA287B3066F5DE0C93396337D4C2DA8D92C1F720A576D62CEB4C979E01E",
    0x00000008: "20A796D5077D51B8E7613893A4F095B134E02917DC84BD391F3661D0873FF308",
    0x0001FFFE: "A289508CBF1228452CD86AB77B15CB35577AC828C18BB66681E5A16D6C9CCED3",
    0x00020000: "D62DDA94A47D7DA5D763443B4ECB15EA8DD62E0E4F915958BA459591F8312E37",
    0x00020001: "44110A1102748D4A3AC326F53D8CAC650212590CA7126D54546DDE0F20E89CEE",
    0xFFFE2000: "4625EB06E4886D4AFCC9AE37ED4F4E4E1653C9E60E3F24742A87A26AA96AB7A6",
    0xFFFE4000: "FF20E1BB575539ACCB44E3111BE8757F83AE8549A2DD71B441A4A424F7FFD4B1",
    0xFFFE8000: "630535C9C53E1EC6524016930B56F6728909C45403536B419AEBCB25B7351C07",
    0xFFFF0000: "6D6DB7AAAE8B3EA90E57A39E4BBA71E173B21B446B30A78D64BFC6A8806C55EE",
}

# AES-128 working keys from the AES-128 BDK: (PIN, MAC generation, data encryption encrypt).
WORKING_128 = {
    0x00000001: (
        "AF8CB133A78F8DC2D1359F18527593FB",
        "A2DC23DE6FDE0824A2BC321E08E4B8B7",
        "A35C412EFD41FDB98B69797C02DCD08F",
    ),
    0x00000002: (
        "D30BDC73EC9714B000BEC66BDB7B6D09",
        "484C3B06E8562704528CD5B46FB12FB6",
        "D639514AA33AC43AD9229E433D6D4E5B",
    ),
    0x00000003: (
        "7D69F01F3B45449F62C7816ECE723268",
        "A5DF7D9D800CA769766F0C77CA4E6E6C",
        "EF17F6AB45B4820C93A3DCB21BC491AD",
    ),
    0x00000004: (
        "91A0588318EC2673214271F70137896E",
        "E6E4679647D8A9057C1FC15537CB4C4E",
        "B3BD44C08BB6BA27C3BB4711D7D70387",
    ),
    0x00000005: (
        "35A43BC9EFEB09C756204B57E3FB7D4D",
        "0588185FE1FF8C7E22FAD78C1C61F065",
        "CA02DF6F30B39E14BD0B4A30E460920F",
    ),
    0x00000008: (
        "4D9DF3FBEE3448FC3E676D04320A90F5",
        "6FD572E5D59E618875F193484F9178FB",
        "650F34204ABD4E57764D61AC3D266FB1",
    ),
    0x0001FFFE: (
        "DDF7E08A84B5478C498D007C743BF762",
        "6D7623AD652734B8FAE1B6E093EACE3D",
        "8E4E5D5E0F01C54F01F4ACA1C8F8EDCE",
    ),
    0x00020000: (
        "AB828BE7B58C7EC5D5ED0D5D320A0C9D",
        "0B59D3D7D93028D97135FB895CACE24E",
        "13361208975755318FE7AE28C9616014",
    ),
}

# Every key usage of the key usage table, AES-128 BDK, counter 1.
ALL_USAGES_128_COUNTER_1 = {
    KeyUsage.KEY_ENCRYPTION: "36A724B7BEFA5A25F5E7B5782A4554A2",
    KeyUsage.PIN_ENCRYPTION: "AF8CB133A78F8DC2D1359F18527593FB",
    KeyUsage.MAC_GENERATION: "A2DC23DE6FDE0824A2BC321E08E4B8B7",
    KeyUsage.MAC_VERIFICATION: "DBB463945B286C07CD3AD82EE96FD9C9",
    KeyUsage.MAC_BOTH_WAYS: "85675439D18D7F1158BD8E3EAA3D502B",
    KeyUsage.DATA_ENCRYPT: "A35C412EFD41FDB98B69797C02DCD08F",
    KeyUsage.DATA_DECRYPT: "16292C6EA8F64C5420A0584BFBC577BE",
    KeyUsage.DATA_BOTH_WAYS: "A308E080DD15A1B741F1721BF67DE11C",
    KeyUsage.KEY_DERIVATION: "30E54D3C69B22501A7FC43969D81D5C0",
}

# AES-256 BDK, counter 1: AES-256 working keys and AES-128 working keys (PIN, MAC gen, data).
WORKING_256_COUNTER_1 = (
    "8C1AB7BEE973829E30242E0BBBDD4946D540C98FC1B5BDCF94790001A23FD502",
    "61DABDF4B340CF461EE860B1D1AB55357142BD2D6977306859CF49AEFE8F1549",
    "71EB36C9A6B7F801D1D1700C29741FC5A5C4E9B45D742DA7AF6992B8AA29AF58",
)
WORKING_128_FROM_256_COUNTER_1 = (
    "09C9C432966811D6B2C3336BAC1B1202",
    "F04A1FABD4176E15490CEC82E217A96D",
    "616D59AE91F8CC7016F89FDA29605FA4",
)
TRIPLE = (KeyUsage.PIN_ENCRYPTION, KeyUsage.MAC_GENERATION, KeyUsage.DATA_ENCRYPT)


def test_initial_key_from_aes128_bdk() -> None:
    assert derive_initial_key(BDK_128, IKID) == IK_128


def test_initial_key_from_aes256_bdk() -> None:
    assert derive_initial_key(BDK_256, IKID) == IK_256


def test_initial_key_derivation_data_layout() -> None:
    # Version 01, block 01, usage 8001 (initial key), AES-128 (0002), 128 bits, the IK ID.
    data = derivation_data(KeyUsage.KEY_DERIVATION_INITIAL_KEY, KeyType.AES128, IKID.to_bytes())

    assert data.hex().upper() == "01018001000200801234567890123456"


@pytest.mark.parametrize(("counter", "expected"), sorted(TXN_128.items()))
def test_aes128_transaction_keys(counter: int, expected: str) -> None:
    device = DukptOriginator(initial_key=IK_128, initial_key_id=IKID)

    assert device.transaction_key(counter).hex().upper() == expected


@pytest.mark.parametrize(("counter", "expected"), sorted(TXN_256.items()))
def test_aes256_transaction_keys(counter: int, expected: str) -> None:
    device = DukptOriginator(initial_key=IK_256, initial_key_id=IKID)

    assert device.transaction_key(counter).hex().upper() == expected


@pytest.mark.parametrize(("counter", "expected"), sorted(WORKING_128.items()))
def test_aes128_working_keys_on_device_and_host(
    counter: int, expected: tuple[str, str, str]
) -> None:
    device = DukptOriginator(initial_key=IK_128, initial_key_id=IKID)
    ksn = device.ksn(counter)

    for usage, want in zip(TRIPLE, expected, strict=True):
        assert device.working_key(counter, usage).hex().upper() == want
        assert host_working_key(BDK_128, ksn, usage, KeyType.AES128).hex().upper() == want


@pytest.mark.parametrize(("usage", "expected"), sorted(ALL_USAGES_128_COUNTER_1.items()))
def test_every_key_usage_at_counter_1(usage: KeyUsage, expected: str) -> None:
    device = DukptOriginator(initial_key=IK_128, initial_key_id=IKID)

    assert device.working_key(1, usage).hex().upper() == expected


def test_aes256_working_keys_at_counter_1() -> None:
    device = DukptOriginator(initial_key=IK_256, initial_key_id=IKID)
    ksn = device.ksn(1)

    for usage, want in zip(TRIPLE, WORKING_256_COUNTER_1, strict=True):
        assert device.working_key(1, usage).hex().upper() == want
        assert host_working_key(BDK_256, ksn, usage, KeyType.AES256).hex().upper() == want


def test_aes128_working_keys_from_aes256_bdk_at_counter_1() -> None:
    device = DukptOriginator(initial_key=IK_256, initial_key_id=IKID)

    for usage, want in zip(TRIPLE, WORKING_128_FROM_256_COUNTER_1, strict=True):
        assert device.working_key(1, usage, KeyType.AES128).hex().upper() == want


def test_aes192_device_and_host_agree() -> None:
    bdk = bytes(range(24))
    initial_key = derive_initial_key(bdk, IKID)
    device = DukptOriginator(initial_key=initial_key, initial_key_id=IKID)

    assert len(initial_key) == 24
    for counter in (1, 2, 0x845FED, MAX_COUNTER):
        key = device.working_key(counter, KeyUsage.DATA_ENCRYPT)
        assert len(key) == 24
        assert key == host_working_key(
            bdk, device.ksn(counter), KeyUsage.DATA_ENCRYPT, KeyType.AES192
        )


def test_a_working_key_stronger_than_its_derivation_key_is_refused() -> None:
    device = DukptOriginator(initial_key=IK_128, initial_key_id=IKID)

    with pytest.raises(KeyMaterialError):
        device.working_key(1, KeyUsage.PIN_ENCRYPTION, KeyType.AES256)


def test_keys_of_other_lengths_are_refused() -> None:
    with pytest.raises(KeyMaterialError):
        derive_initial_key(bytes(8), IKID)
    with pytest.raises(KeyMaterialError):
        DukptOriginator(initial_key=bytes(20), initial_key_id=IKID)
    with pytest.raises(KeyMaterialError):
        derive_key(bytes(15), KeyType.AES128, bytes(16))


def test_ksn_layout_and_round_trip() -> None:
    ksn = Ksn(initial_key_id=IKID, counter=0x845FED)

    assert ksn.hex() == "123456789012345600845FED"
    assert Ksn.from_hex(ksn.hex()) == ksn
    assert ksn.initial_key_id.bdk_id.hex() == "12345678"
    assert ksn.initial_key_id.derivation_id.hex() == "90123456"


def test_counter_rules() -> None:
    assert not is_valid_counter(0)
    assert is_valid_counter(1)
    assert is_valid_counter(0x0001FFFE)
    assert not is_valid_counter(0x0001FFFF)  # 17 one-bits
    assert is_valid_counter(MAX_COUNTER)
    assert not is_valid_counter(0xFFFFFFFF)  # reserved for the DUKPT update key
    assert next_counter(0) == 1
    assert next_counter(0x0001FFFE) == 0x00020000
    assert next_counter(0xFFFE8000) == 0xFFFF0000
    assert next_counter(MAX_COUNTER) is None


def test_transaction_key_refuses_an_invalid_counter() -> None:
    with pytest.raises(ValueError, match="not a valid"):
        derive_transaction_key(IK_128, Ksn(initial_key_id=IKID, counter=0x1FFFF))
    with pytest.raises(ValueError, match="not a valid"):
        derive_transaction_key(IK_128, Ksn(initial_key_id=IKID, counter=0))


@given(st.integers(min_value=0, max_value=MAX_COUNTER - 1))
def test_next_counter_is_the_smallest_valid_counter_above(counter: int) -> None:
    following = next_counter(counter)

    assert following is not None
    assert following > counter
    assert is_valid_counter(following)
    # Nothing valid was skipped: every counter in between has more than 16 one-bits.
    gap = following - counter - 1
    if gap:
        step = max(1, gap // 64)
        assert not any(is_valid_counter(c) for c in range(counter + 1, following, step))


def _register_device(initial_key: bytes, transactions: int) -> list[tuple[int, bytes]]:
    """The standard's originating-device algorithm (X9.24-3-2017), with its 32 registers.

    Load Initial Key fills register i with the key for counter 2^i; each transaction uses the
    register of the counter's lowest one-bit, then (if the counter has fewer than 16
    one-bits) derives the registers below it and adds 1, else adds that lowest bit.
    """
    key_type = KeyType.for_key(initial_key)

    def derive(base: bytes, counter: int) -> bytes:
        context = IKID.derivation_id + counter.to_bytes(4, "big")
        return derive_key(
            base, key_type, derivation_data(KeyUsage.KEY_DERIVATION, key_type, context)
        )

    registers: list[bytes | None] = [derive(initial_key, 1 << i) for i in range(32)]
    counter = 1
    used: list[tuple[int, bytes]] = []
    while len(used) < transactions and counter <= MAX_COUNTER:
        low = (counter & -counter).bit_length() - 1
        key = registers[low]
        assert key is not None
        used.append((counter, key))
        if counter.bit_count() < 16:
            for j in range(low - 1, -1, -1):
                registers[j] = derive(key, counter | 1 << j)
            counter += 1
        else:
            counter += 1 << low
        registers[low] = None
    return used


def test_on_demand_derivation_matches_the_standards_register_device() -> None:
    # 131,080 transactions run past 0x1FFFF, the first counter with 17 one-bits.
    used = _register_device(IK_128, 131_080)
    device = DukptOriginator(initial_key=IK_128, initial_key_id=IKID)

    counters = [c for c, _ in used]
    expected_counters = [1]
    while len(expected_counters) < len(counters):
        nxt = next_counter(expected_counters[-1])
        assert nxt is not None
        expected_counters.append(nxt)
    assert counters == expected_counters
    assert 0x1FFFF not in counters
    assert 0x20000 in counters
    sample = [*used[:300], *used[::997], *used[-300:]]
    for counter, key in sample:
        assert device.transaction_key(counter) == key
