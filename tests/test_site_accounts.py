"""``ORCH_SITE_ACCOUNTS`` (the accounts an execution of orch serve logs into sites with) and
``ORCH_SITE_ACCOUNTS_ONLY``: read from a file orch serve writes, but checked like any input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orch.sites.config import SitesError, load_sites, with_accounts

SITES = """\
sites:
  hpc1: {host: login1.example.org, user: owner, identity_file: ~/.ssh/id_owner}
  hpc2: {host: login2.example.org, user: owner}
"""


@pytest.fixture
def book(tmp_path: Path):
    (tmp_path / "sites.yaml").write_text(SITES)
    return load_sites(tmp_path / "sites.yaml")


def test_an_account_replaces_the_login_and_the_key(book, tmp_path: Path) -> None:
    accounts = tmp_path / "accounts.json"
    accounts.write_text(json.dumps({"hpc1": {"user": "alice", "credentials": "k" * 24},
                                    "elsewhere": {"user": "x", "credentials": "y"}}))  # fmt: skip
    changed = with_accounts(book, accounts)
    site = changed.get("hpc1")
    assert (site.user, site.credentials, site.identity_file) == ("alice", "k" * 24, None)
    assert changed.get("hpc2").user == "owner"  # no account there: sites.yaml's


def test_only_accounts_refuses_the_other_sites_saying_why(book, tmp_path: Path) -> None:
    accounts = tmp_path / "accounts.json"
    accounts.write_text(json.dumps({"hpc1": {"user": "alice", "credentials": "k" * 24}}))
    changed = with_accounts(book, accounts, only=True)
    assert changed.get("hpc1").user == "alice"
    with pytest.raises(SitesError) as raised:
        changed.get("hpc2")
    assert "own account only, and they have none there" in raised.value.diagnostics[0].message
    assert [s.name for s in changed] == ["hpc1"]
    with pytest.raises(SitesError):
        with_accounts(book, None, only=True).get("hpc1")


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", '{"hpc1": {"user": 7}}'])
def test_a_broken_accounts_file_is_an_error_not_a_traceback(book, tmp_path: Path,
                                                            text: str) -> None:  # fmt: skip
    accounts = tmp_path / "accounts.json"
    accounts.write_text(text)
    with pytest.raises(SitesError):
        with_accounts(book, accounts)
    with pytest.raises(SitesError):
        with_accounts(book, tmp_path / "missing.json")
