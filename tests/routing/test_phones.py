"""Phone numbers as Exotel and CRMs write them: parsing to E.164, variants, masking."""

from __future__ import annotations

import sample
import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dialwhom.routing.phones import digits_only, is_sip, numbers_in, parse_config_number, same_number, to_e164, variants
from dialwhom.routing.redact import mask

MOBILE = "+919876543210"
LANDLINE = "+918023456789"
EXOPHONE = sample.LINE_NORTH
US = "+14155550123"

@pytest.mark.parametrize(
    "raw, region, expected",
    [
        # Indian mobiles in every form seen on the wire or in CRMs
        ("09876543210", "IN", MOBILE),  # national, leading zero (Exotel's usual)
        ("9876543210", "IN", MOBILE),  # 10 digits
        ("+919876543210", "IN", MOBILE),
        ("919876543210", "IN", MOBILE),
        ("0091 98765 43210", "IN", MOBILE),
        ("00919876543210", "IN", MOBILE),
        (" 919876543210", "IN", MOBILE),  # '+' decoded to a space
        ("  919876543210  ", "IN", MOBILE),
        ("098765 43210", "IN", MOBILE),
        ("+91-98765-43210", "IN", MOBILE),
        ("+91 98765 43210", "IN", MOBILE),
        ("+91 (98765) 43210", "IN", MOBILE),
        ("98765.43210", "IN", MOBILE),
        ("\t09876543210\t", "IN", MOBILE),
        # landlines and ExoPhones
        ("(080) 2345-6789", "IN", LANDLINE),
        ("080-23456789", "IN", LANDLINE),
        ("08023456789", "IN", LANDLINE),
        ("+91 80 2345 6789", "IN", LANDLINE),
        ("08039513882", "IN", EXOPHONE),
        ("8039513882", "IN", EXOPHONE),
        # international callers
        ("+14155550123", "IN", US),
        ("0014155550123", "IN", US),
        (" 14155550123", "IN", US),
        ("+44 20 7946 0018", "IN", "+442079460018"),
        ("(415) 555-0123", "US", US),
        ("4155550123", "US", US),
    ],
)
def test_to_e164_accepts_common_forms(raw, region, expected):
    assert to_e164(raw, region) == expected


@pytest.mark.parametrize(
    "raw",
    [
        None,
        "",
        " ",
        "+",
        "12",
        "12345",
        "abc",
        "call me",
        "98765abc43210",
        "sip:x",
        "sip:agent42@example.com",
        "1" * 41,
        "9" * 200,
        "٠٩٨٧٦٥٤٣٢١٠",  # Arabic-Indic digits
        "०९८७६५४३२१०",  # Devanagari digits
        "０９８７６５４３２１０",  # full-width digits
        "+0",
        "+999999999999999999",
        "09876543210\x00",
        "null",
        "tel:+919876543210",
        "123456",
        "2345678",
    ],
)
def test_to_e164_rejects_garbage(raw):
    assert to_e164(raw, "IN") is None


@given(st.text(max_size=300))
@settings(max_examples=300, deadline=None)
def test_to_e164_never_raises_and_answers_e164_or_none(raw):
    out = to_e164(raw, "IN")
    assert out is None or (out.startswith("+") and out[1:].isdigit())


@given(st.text(alphabet="0123456789+()-./ \t", max_size=45), st.sampled_from(["IN", "US", "GB", "SG"]))
@settings(max_examples=300, deadline=None)
def test_to_e164_on_phone_like_text(raw, region):
    out = to_e164(raw, region)
    if out is not None:
        assert out.startswith("+") and out[1:].isdigit()
        assert to_e164(out, region) == out  # idempotent


def test_variants_of_an_indian_mobile():
    v = variants(MOBILE)
    assert v[0] == MOBILE
    assert len(v) == len(set(v))
    for form in (
        "+919876543210",
        "919876543210",
        "9876543210",
        "09876543210",
        "+91 98765 43210",
        "+91-98765-43210",
        "098765 43210",
        "00919876543210",
    ):
        assert form in v


@pytest.mark.parametrize("e164", [MOBILE, LANDLINE, EXOPHONE, "+442079460018"])
def test_every_variant_is_the_same_number(e164):
    region = phonenumbers.region_code_for_number(phonenumbers.parse(e164))
    for form in variants(e164):
        assert same_number(form, e164, region), form


def test_variants_of_something_unparseable_is_itself():
    assert variants("sip:agent42") == ["sip:agent42"]
    assert variants("garbage") == ["garbage"]


@pytest.mark.parametrize(
    "stored, e164, expected",
    [
        ("098765 43210", MOBILE, True),
        ("+91-98765-43210", MOBILE, True),
        ("9876543210", MOBILE, True),
        ("0091 98765 43210", MOBILE, True),
        ("09876543211", MOBILE, False),
        (US, MOBILE, False),
        ("", MOBILE, False),
        (None, MOBILE, False),
        ("not a number", MOBILE, False),
    ],
)
def test_same_number(stored, e164, expected):
    assert same_number(stored, e164, "IN") is expected


# -- the re-check on real stored values (every CRM connector uses it) ---------------------------

SECOND = "+919123456789"


@pytest.mark.parametrize(
    "stored",
    [
        "9876543210, 9123456789",
        "9123456789, 9876543210",
        "9876543210; 9123456789",
        "9123456789 / 98765 43210",
        "9123456789/9876543210",
        "9123456789 | 9876543210",
        "9123456789\n098765 43210",
        "91234 56789 or 98765 43210",
        "9123456789 9876543210",  # two numbers, only a space between them
        "98765 43210 (M)",
        "(M) 98765 43210",
        "98765 43210 (Mobile)",
        "Mob: +91 98765 43210",
        "Tel. 098765-43210",
        "+91 98765 43210 ext 5",
        "+91 98765 43210 ext. 5",
        "+91 98765 43210 Ext: 55",
        "+91 98765 43210 extn 123",
        "+91 98765 43210 extension 7",
        "+91 98765 43210 x5",
        "+91 98765 43210 X 5",
        "+91 98765 43210 #5",
        "+91 98765\u201343210",  # en dash
        "+91\u201498765\u201443210",  # em dashes
        "+91 98765\u201143210",  # non-breaking hyphen
        "+91\u00a098765\u00a043210",  # no-break spaces
        "Office 080 2345 6789 ext 201, mobile 98765 43210 (M)",
        " 098765 43210 ",
    ],
)
def test_same_number_reads_every_number_and_ignores_labels_and_extensions(stored):
    assert same_number(stored, MOBILE, "IN") is True


@pytest.mark.parametrize(
    "stored",
    [
        "9123456789, 9000000001",
        "98765 43211 (M)",
        "+91 98765 4321 ext 0",  # the extension is not the last digit of the number
        "+1 987-654-3210 / +44 20 7946 0018",
        "987654321",  # one digit short
        "98765 43210 98765",  # not a number, not two numbers
        "Mobile",
        "ext 5",
        ",,,;;",
    ],
)
def test_same_number_rejects_other_numbers_and_noise(stored):
    assert same_number(stored, MOBILE, "IN") is False


def test_numbers_in_keeps_order_and_drops_duplicates():
    assert numbers_in("9876543210, 098765 43210 (M) / +91 91234 56789 x2", "IN") == (MOBILE, SECOND)
    assert numbers_in("", "IN") == () and numbers_in(None, "IN") == ()
    assert numbers_in("(080) 2345-6789; 080/23456789", "IN") == (LANDLINE,)


_SEPARATORS = st.sampled_from([", ", ",", "; ", " / ", "/", " | ", "\n", " or ", " & "])
_LABELS = st.sampled_from(["", " (M)", " (home)", " (Office)", " ext 5", " ext. 12", " x5", " X 301", " extn 9", " #4"])
_PREFIXES = st.sampled_from(["", "Mob: ", "Tel. ", "M ", "(W) "])


@given(
    st.from_regex(r"\+91[6-9][0-9]{9}", fullmatch=True),
    st.from_regex(r"\+91[6-9][0-9]{9}", fullmatch=True),
    st.integers(0, 9), st.integers(0, 9), _SEPARATORS, _LABELS, _LABELS, _PREFIXES, st.booleans(),
)
@settings(max_examples=300, deadline=None)
def test_same_number_property_any_form_in_any_list(caller, other, form_a, form_b, sep, label_a, label_b, prefix, first):
    """The caller's number, written in any of its forms, with a label or an extension, anywhere
    in a list with another number, is found; the other number alone never is."""
    forms_caller, forms_other = variants(caller), variants(other)
    mine = prefix + forms_caller[form_a % len(forms_caller)] + label_a
    theirs = forms_other[form_b % len(forms_other)] + label_b
    stored = sep.join([mine, theirs] if first else [theirs, mine])
    assert same_number(stored, caller, "IN")
    assert same_number(theirs, caller, "IN") is (other == caller)
    dashed = mine.replace("-", "\u2013")
    assert same_number(dashed, caller, "IN")


@given(st.text(max_size=120), st.sampled_from([MOBILE, US]))
@settings(max_examples=300, deadline=None)
def test_numbers_in_never_raises_and_answers_e164(stored, e164):
    found = numbers_in(stored, "IN")
    assert all(n.startswith("+") and n[1:].isdigit() for n in found)
    assert same_number(stored, e164, "IN") is (e164 in found or to_e164(stored.strip(), "IN") == e164)


def _visible_digits(masked: str) -> str:
    return digits_only(masked)


@pytest.mark.parametrize(
    "value, country",
    [
        (MOBILE, "91"),
        (LANDLINE, "91"),
        (EXOPHONE, "91"),
        (sample.ASHA, "91"),
        pytest.param(US, "1"),
        ("+6591234567", "65"),
        pytest.param("+3531234567890", "353"),
    ],
)
def test_mask_shows_country_code_and_last_three_digits_only(value, country):
    masked = mask(value)
    assert masked.startswith("+" + country)
    rest = masked[len(country) + 1:]
    assert _visible_digits(rest) == value[-3:]
    assert masked.endswith(value[-3:])
    assert value not in masked


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("09876543210"),
        pytest.param("9876543210"),
        "12345",
        "1234",
    ],
)
def test_mask_of_a_number_without_plus_shows_at_most_the_last_three_digits(value):
    visible = _visible_digits(mask(value))
    assert len(visible) <= 3
    assert value.endswith(visible)


@given(st.from_regex(r"\+[1-9][0-9]{7,14}", fullmatch=True))
@settings(max_examples=200, deadline=None)
def test_mask_never_contains_more_than_five_digits_of_an_e164_number(value):
    """Country code (at most 3 digits shown, 2 today) plus the last 3: never the number."""
    masked = mask(value)
    assert len(_visible_digits(masked)) <= 6
    assert masked.endswith(value[-3:])
    assert value[1:] not in masked


@pytest.mark.parametrize("value, expected", [(None, "-"), ("", "-"), ("sip:agent42", "sip:***"), ("SIP:Agent", "sip:***"), ("12345", "*****")])
def test_mask_edge_cases(value, expected):
    assert mask(value) == expected


@given(st.text(max_size=100))
@settings(max_examples=200, deadline=None)
def test_mask_never_raises(value):
    assert isinstance(mask(value), str)


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("sip:agent42", "sip:agent42"),
        ("  sip:agent42 ", "sip:agent42"),
        ("SIP:Desk-7", "SIP:Desk-7"),
        (sample.ASHA, sample.ASHA),
        ("09800000001", sample.ASHA),
        ("not a number", None),
        ("12", None),
    ],
)
def test_parse_config_number(raw, expected):
    assert parse_config_number(raw, "IN") == expected


def test_is_sip_and_digits_only():
    assert is_sip(" sip:x") and is_sip("SIP:x") and not is_sip(sample.ASHA)
    assert digits_only("+91 (98765)-43210") == "919876543210"
    assert digits_only("٠٩٨") == ""
