"""ldap3, imported once for the package: its 2.9.1 release (the last) imports names that
pyasn1 0.6.1 and later deprecate, a warning that is nobody's business here."""

import warnings

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", "tagMap is deprecated", DeprecationWarning)
    warnings.filterwarnings("ignore", "typeMap is deprecated", DeprecationWarning)
    import ldap3  # type: ignore[import-untyped]
    from ldap3.core import exceptions as ldap_errors  # type: ignore[import-untyped]
    from ldap3.utils.conv import escape_filter_chars  # type: ignore[import-untyped]
    from ldap3.utils.dn import escape_rdn, parse_dn  # type: ignore[import-untyped]

__all__ = ["escape_filter_chars", "escape_rdn", "ldap3", "ldap_errors", "parse_dn"]
