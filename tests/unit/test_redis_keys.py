"""Redis key names (rtt/engines/redis/keys.py): the bulk builder names what the one-key ones do."""

from rtt.engines.redis import keys


def test_profile_keys_are_the_one_key_names_profile_by_profile():
    """A send builds its recipients' keys in one pass; a name that differs from `box`/`stream`/…
    would write a profile's state where nothing reads it."""
    profiles = ["p1", "b:c", "x}y", "ü"]
    built = keys.profile_keys("a:b", profiles, keys.BOX, keys.STREAM, keys.EVENTS)
    expected = [
        name
        for p in profiles
        for name in (
            keys.box("a:b", p),
            keys.stream("a:b", p),
            keys.events("a:b", p),
        )
    ]
    assert built == expected
    assert keys.profile_keys("a", ["p"], keys.EVENT_ORDER) == [keys.event_order("a", "p")]
