from django.test import RequestFactory, override_settings

from studyplatform.core.client_ip import client_ip


def _request(peer: str, forwarded: str | None = None):
    extra = {"REMOTE_ADDR": peer}
    if forwarded is not None:
        extra["HTTP_X_FORWARDED_FOR"] = forwarded
    return RequestFactory().get("/", **extra)


@override_settings(TRUSTED_PROXIES=[])
def test_it_ignores_x_forwarded_for_when_no_proxy_is_trusted():
    # given: a client on loopback that sends a forged header
    request = _request("127.0.0.1", "203.0.113.9")
    # then: the socket peer is the client
    assert client_ip(request) == "127.0.0.1"


@override_settings(TRUSTED_PROXIES=["10.0.0.0/8"])
def test_it_ignores_x_forwarded_for_from_an_untrusted_peer():
    assert client_ip(_request("198.51.100.7", "203.0.113.9")) == "198.51.100.7"


@override_settings(TRUSTED_PROXIES=["10.0.0.0/8"])
def test_it_takes_the_rightmost_untrusted_hop_behind_a_trusted_proxy():
    # given: the client forged a leftmost entry; our proxy appended the real peer
    request = _request("10.1.2.3", "1.1.1.1, 203.0.113.9, 10.4.5.6")
    # then: entries the client wrote are never believed
    assert client_ip(request) == "203.0.113.9"


@override_settings(TRUSTED_PROXIES=["10.0.0.0/8"])
def test_it_falls_back_to_the_peer_on_a_malformed_hop():
    assert client_ip(_request("10.1.2.3", "not-an-ip")) == "10.1.2.3"
    assert client_ip(_request("10.1.2.3")) == "10.1.2.3"
