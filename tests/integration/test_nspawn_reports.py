"""What a failing test's report shows of nspawn machines: each one's etcd log, as the
section's title says, not the container's whole journal (root only, as CI runs)."""

from __future__ import annotations

import re

import pytest

# journalctl's default line: "Nov 30 09:00:00 core-01 etcd[123]: ..." (or systemd[1]
# about the unit itself, which -u keeps).
JOURNAL_LINE = re.compile(r"^\w{3} [ \d]\d \d\d:\d\d:\d\d (core-\d\d) ([\w.-]+)\[\d+\]: ")


@pytest.mark.needs_root
def test_the_etcd_log_section_holds_etcds_journal(inner: pytest.Pytester) -> None:
    inner.makepyfile(
        """
        def test_fails(coreos_cluster):
            for machine in coreos_cluster:  # the journal's last lines are not etcd's
                machine.ssh.run("for n in $(seq 40); do logger -t noise line $n; done")
            assert coreos_cluster.etcd.get("/missing-on-purpose") == "x"
        """
    )
    result = inner.runpytest_subprocess("--coreos-provider=nspawn", "--coreos-instances=2")
    result.assert_outcomes(failed=1)
    lines = result.stdout.lines
    for name in ("core-01", "core-02"):
        start = next(i for i, line in enumerate(lines) if f" {name} etcd log " in line)
        end = next(i for i in range(start + 2, len(lines)) if lines[i][:3] in ("---", "==="))
        section = [line for line in lines[start + 2 : end] if line.strip()]
        assert section, f"{name}: empty etcd log section"
        sources = set()
        for line in section:
            found = JOURNAL_LINE.match(line)
            assert found is not None, line
            assert found.group(1) == name, line
            sources.add(found.group(2))
        assert sources <= {"etcd", "systemd"}, sources
        assert "etcd" in sources
