"""Network test infrastructure: a forward proxy (tinyproxy) and a throw-away CA for HTTPS."""
