import pytest

from veracity.api.auth import ApiKeyAuth, key_id
from veracity.errors import AuthenticationError

OLD, NEW = "old-key-0123456789abcdef", "new-key-0123456789abcdef"


def test_every_configured_key_is_accepted_during_rotation() -> None:
    auth = ApiKeyAuth([OLD, NEW])
    assert auth.authenticate(OLD) == key_id(OLD)
    assert auth.authenticate(NEW) == key_id(NEW)


@pytest.mark.parametrize("presented", [None, "", "wrong-key-0123456789abcdef", OLD[:-1], OLD + "x"])
def test_missing_or_wrong_keys_are_refused(presented) -> None:
    with pytest.raises(AuthenticationError) as info:
        ApiKeyAuth([OLD]).authenticate(presented)
    assert info.value.status_code == 401
    assert info.value.headers == {"WWW-Authenticate": 'ApiKey header="X-API-Key"'}


def test_key_id_is_short_stable_and_not_the_key() -> None:
    assert key_id(OLD) == key_id(OLD)
    assert len(key_id(OLD)) == 8
    assert key_id(OLD) not in OLD
    assert key_id(OLD) != key_id(NEW)


def test_disabled_auth_accepts_anything() -> None:
    assert ApiKeyAuth([], enabled=False).authenticate(None) is None


def test_enabled_auth_needs_a_key() -> None:
    with pytest.raises(ValueError, match="at least one key"):
        ApiKeyAuth([])


def test_only_digests_are_kept() -> None:
    auth = ApiKeyAuth([OLD])
    assert OLD not in repr(vars(auth))


def test_admin_keys_are_keys_with_the_admin_scope() -> None:
    admin = "admin-key-0123456789abcdef"
    auth = ApiKeyAuth([OLD], admin_keys=[admin])
    assert auth.identify(OLD).admin is False
    assert auth.identify(admin).admin is True
    assert auth.identify(admin).key_id == key_id(admin)
    # A key listed as both is an admin; auth off makes every caller one (local development).
    assert ApiKeyAuth([admin], admin_keys=[admin]).identify(admin).admin is True
    assert ApiKeyAuth([], enabled=False).identify(None).admin is True
