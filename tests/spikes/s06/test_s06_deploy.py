"""Spike 6's deployment: the PostgreSQL clusters copied from one initdb are separate, working databases."""

from __future__ import annotations

import pytest

from spikes.s06_scalability.deploy import TemplatePostgres
from tests.utils import require_program


@pytest.mark.slow
def test_clusters_copied_from_one_initdb_are_separate_databases(tmp_path):
    require_program("postgres")
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    with TemplatePostgres(log_path=logs[0]) as a, TemplatePostgres(log_path=logs[1]) as b:
        assert a.dir != b.dir and a.port != b.port
        a.psql("CREATE TABLE only_in_a (x int); INSERT INTO only_in_a VALUES (1), (2);")
        assert a.psql("SELECT count(*) FROM only_in_a").strip() == "2"
        assert b.psql("SELECT count(*) FROM pg_tables WHERE tablename = 'only_in_a'").strip() == "0"
        template = next(iter(TemplatePostgres._templates.values()))
        assert template.is_dir() and not (template / "postmaster.pid").exists()  # the template itself never runs
    for log in logs:
        assert f"a copy of {template}" in log.read_text()
