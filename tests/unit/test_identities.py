"""Which ids pass for a system identity (rtt/domain/identities.py)."""

import pytest

from rtt.domain.identities import identity_key, is_system_identity


@pytest.mark.parametrize(
    "profile",
    [
        "System",
        "system",
        "SYSTEM",
        "System ",
        "\tSystem",
        "S y s t e m",
        "\uff33\uff59stem",
        "Sys\u200btem",
        "Sy\u00adstem",
        "System\u2028",
        "System\u00a0",
    ],
)
def test_lookalikes_of_system_are_system(profile):
    """Pins: only the exact string "System" was treated as the app's identity."""
    assert is_system_identity(profile, ["System"])


@pytest.mark.parametrize("profile", ["Systemic", "p1", "", "\u0405ystem", "Syst3m"])
def test_other_ids_are_profiles(profile):
    assert not is_system_identity(profile, ["System"])


def test_every_listed_identity_counts():
    identities = ["System", "Support Bot"]
    assert is_system_identity("supportbot", identities)
    assert not is_system_identity("support", identities)
    assert not is_system_identity("anything", [])


def test_key_folds_compatibility_forms_and_case():
    assert identity_key("\ufb01le") == identity_key("FILE")  # the "fi" ligature
