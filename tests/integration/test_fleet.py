"""cluster.fleet: fleetctl's listings parsed as fleet documents them and as real fleet
v1.0.0 printed them (tests/data/fleet), the global-unit wait, the error a machine without
fleet gives, the seed's user-data starting real fleet on nspawn machines, and the commands
end to end over SSH against a stand-in fleetctl script (for what real fleet would not
show: the exact arguments fleetctl is given). The real-fleet suite is
tests/test_fleet_suite.py."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from pytest_coreos import FleetError
from pytest_coreos.handles.fleet import (
    Fleet,
    FleetMachine,
    FleetUnit,
    FleetUnitFile,
    matches_metadata,
    parse_list_machines,
    parse_list_unit_files,
    parse_list_units,
    parse_metadata,
    parse_x_fleet,
    units_not_in_state,
)

REAL = Path(__file__).parents[1] / "data" / "fleet"

# -- parsers -------------------------------------------------------------------------------

# The samples below are fleet's own, from github.com/coreos/fleet (last commit 4522498,
# 2018-04-12), Documentation/using-the-client.md, "Explore existing units",
# "Scheduling units" and "Enumerate hosts": fleetctl's default listings, with a legend and
# machine IDs shortened to "85c0c595...".


def test_parses_list_units_as_documented_by_fleet() -> None:
    documented = textwrap.dedent("""\
        UNIT            MACHINE                   ACTIVE  SUB
        goodbye.service 85c0c595.../172.17.8.102  active  running
        hello.service   113f16a7.../172.17.8.103  active  running
    """)
    units = parse_list_units(documented, fields=("unit", "machine", "active", "sub"))
    assert units == [
        FleetUnit(
            "goodbye.service", "85c0c595...", "172.17.8.102", "active", "running", None, None
        ),
        FleetUnit("hello.service", "113f16a7...", "172.17.8.103", "active", "running", None, None),
    ]
    assert units[0].reports("active")
    assert units[0].reports("running")
    assert not units[0].reports("loaded")  # not asked for

    loaded_not_started = textwrap.dedent("""\
        UNIT          MACHINE                  ACTIVE   SUB
        hello.service 113f16a7.../172.17.8.103 inactive dead
    """)
    (hello,) = parse_list_units(loaded_not_started, fields=("unit", "machine", "active", "sub"))
    assert (hello.active, hello.sub) == ("inactive", "dead")


def test_parses_list_unit_files_as_documented_by_fleet() -> None:
    # TMACHINE is the column's name before fleet 0.10, which renamed it TARGET.
    fields = ("unit", "hash", "dstate", "state", "tmachine")
    documented = textwrap.dedent("""\
        UNIT            HASH    DSTATE   STATE    TMACHINE
        goodbye.service d4c61bf launched launched 85c0c595.../172.17.8.102
        hello.service   e55c0ae launched launched 113f16a7.../172.17.8.103
    """)
    goodbye, hello = parse_list_unit_files(documented, fields=fields)
    assert goodbye == FleetUnitFile(
        "goodbye.service", "d4c61bf", "launched", "launched", "85c0c595.../172.17.8.102"
    )
    assert (hello.machine_id, hello.machine_ip, hello.is_global) == (
        "113f16a7...",
        "172.17.8.103",
        False,
    )

    unloaded = textwrap.dedent("""\
        UNIT          HASH    DSTATE   STATE    TMACHINE
        hello.service e55c0ae inactive inactive -
    """)
    (hello,) = parse_list_unit_files(unloaded, fields=fields)
    assert (hello.dstate, hello.state, hello.target, hello.machine_id) == (
        "inactive",
        "inactive",
        None,
        None,
    )


def test_parses_list_machines_as_documented_by_fleet() -> None:
    documented = textwrap.dedent("""\
        MACHINE     IP           METADATA
        113f16a7... 172.17.8.103 az=us-west-1b
        85c0c595... 172.17.8.102 az=us-west-1b
        e793afb9... 172.17.8.101 az=us-west-1a
    """)
    machines = parse_list_machines(documented)
    assert [m.machine_id for m in machines] == ["113f16a7...", "85c0c595...", "e793afb9..."]
    assert machines[2] == FleetMachine("e793afb9...", "172.17.8.101", {"az": "us-west-1a"})


# What the plugin asks for: --no-legend --full --fields=.... fleetctl writes its rows
# through a text/tabwriter that pads cells with tabs (fleetctl/help.go,
# getTabOutWithWriter: minwidth 0, tabwidth 8, padding 1, padchar '\t'), so columns are
# separated by one or more tabs. The values are those of fleet's own unit tests:
# fleetctl/list_units_test.go and list_unit_files_test.go ("other-id/1.2.3.4", the hash
# a0f275d46bc6ee0eca06be7c339913c07d99c0c7, "-" for a missing value) and
# fleetctl/list_machines_test.go (machine 4d389537d9d14bdabe8be54a9c29f68d at 192.0.2.1,
# metadata "foo=bar,ping=pong": formatMetadata sorts the keys).
FULL_HASH = "a0f275d46bc6ee0eca06be7c339913c07d99c0c7"
MACHINE_ID = "4d389537d9d14bdabe8be54a9c29f68d"


def test_parses_full_tab_padded_listings_as_fleetctl_writes_them() -> None:
    units = parse_list_units(
        f"hello.service\t\t\tother-id/1.2.3.4\tactive\trunning\tloaded\t{FULL_HASH}\n"
        f"ping-to-the-pong.service\t{MACHINE_ID}\tinactive\tdead\tloaded\t{FULL_HASH}\n"
        "sleep\t\t\t\t\t-\t-\t-\t-\t-\n"
    )
    assert units == [
        FleetUnit("hello.service", "other-id", "1.2.3.4", "active", "running", "loaded", FULL_HASH),
        FleetUnit(
            "ping-to-the-pong.service", MACHINE_ID, None, "inactive", "dead", "loaded", FULL_HASH
        ),
        FleetUnit("sleep", None, None, None, None, None, None),
    ]

    files = parse_list_unit_files(
        f"foo.service\t{FULL_HASH}\tlaunched\tlaunched\tother-id/1.2.3.4\n"
        f"global.service\t{FULL_HASH}\tlaunched\t-\tglobal\n"
        f"foo@.service\t{FULL_HASH}\t-\t-\t-\n"
    )
    assert [(f.unit, f.machine_id, f.machine_ip, f.is_global) for f in files] == [
        ("foo.service", "other-id", "1.2.3.4", False),
        ("global.service", None, None, True),
        ("foo@.service", None, None, False),
    ]
    assert files[1].state is None
    assert files[2].dstate is None

    assert parse_list_machines(
        f"{MACHINE_ID}\t192.0.2.1\tfoo=bar,ping=pong\n{MACHINE_ID[::-1]}\t-\t-\n"
    ) == [
        FleetMachine(MACHINE_ID, "192.0.2.1", {"foo": "bar", "ping": "pong"}),
        FleetMachine(MACHINE_ID[::-1], None, {}),
    ]


# Real fleet v1.0.0 on three nspawn machines booted from examples/fleet/user-data, after
# starting hello.service, the global global.service, web@1 and web@2 (Conflicts=
# web@*.service) and submitting idle.service: what the plugin asks for, and (-legend)
# fleetctl's default listings, whose IDs are cut to 8 characters and "...".
IDS = {
    "10.213.7.1": "c4ad069063494550a494b9841df91686",
    "10.213.7.2": "e215ccd19f7d4993be281b0176b68863",
    "10.213.7.3": "a4e29917404e43fdbd485cecb7c26fe6",
}


def test_parses_real_fleet_listings() -> None:
    machines = parse_list_machines((REAL / "list-machines.txt").read_text())
    assert {m.ip: m.machine_id for m in machines} == IDS
    assert all(m.metadata == {"address": m.ip, "role": "worker"} for m in machines)

    units = parse_list_units((REAL / "list-units.txt").read_text())
    global_rows = [u for u in units if u.unit == "global.service"]
    assert sorted((u.machine_ip, u.machine_id) for u in global_rows) == sorted(IDS.items())
    assert {(u.active, u.sub, u.load) for u in units} == {("active", "running", "loaded")}
    assert [u.machine for u in units if u.unit == "hello.service"] == [
        f"{IDS['10.213.7.2']}/10.213.7.2"
    ]
    assert all(len(u.hash or "") == 40 for u in units)

    files = {f.unit: f for f in parse_list_unit_files((REAL / "list-unit-files.txt").read_text())}
    assert sorted(files) == [
        "global.service",
        "hello.service",
        "idle.service",
        "web@.service",
        "web@1.service",
        "web@2.service",
    ]
    # A global unit: launched, with no state of its own (each machine has one).
    assert (files["global.service"].dstate, files["global.service"].state) == ("launched", None)
    assert files["global.service"].is_global
    assert (files["idle.service"].state, files["idle.service"].target) == ("inactive", None)
    assert files["web@1.service"].machine_id != files["web@2.service"].machine_id
    assert files["hello.service"].machine_ip == "10.213.7.2"


def test_parses_real_fleet_default_listings_with_their_legends() -> None:
    machines = parse_list_machines((REAL / "list-machines-legend.txt").read_text())
    assert sorted(m.machine_id for m in machines) == sorted(i[:8] + "..." for i in IDS.values())
    units = parse_list_units(
        (REAL / "list-units-legend.txt").read_text(), fields=("unit", "machine", "active", "sub")
    )
    assert len(units) == 6
    assert units[0] == FleetUnit(
        "global.service", "a4e29917...", "10.213.7.3", "active", "running", None, None
    )
    files = parse_list_unit_files((REAL / "list-unit-files-legend.txt").read_text())
    assert [f.hash for f in files][:2] == ["1d4a3bf", "ccfb941"]


def test_a_global_unit_waits_for_every_machine_its_metadata_matches() -> None:
    units = parse_list_units((REAL / "list-units.txt").read_text())
    one_row = [u for u in units if u.unit != "global.service" or u.machine_ip == "10.213.7.1"]
    # Listed and running where listed, as fleet reports a global unit's first machine.
    assert units_not_in_state(one_row, ["global.service"], "running") == []
    # Its machines: 1/3 of them report.
    assert units_not_in_state(
        one_row, ["global.service"], "running", {"global.service": list(IDS.values())}
    ) == ["global.service (active/running; global, 1/3 machines)"]
    assert (
        units_not_in_state(
            units, ["global.service"], "running", {"global.service": list(IDS.values())}
        )
        == []
    )


def test_reads_x_fleet_options_and_matches_machine_metadata() -> None:
    unit = textwrap.dedent("""        [Unit]
        Description=MachineMetadata=not-this

        [X-Fleet]
        Global=true
        MachineMetadata=role=worker
        MachineMetadata="az=a b" az=c
    """)
    options = parse_x_fleet(unit)
    assert options == {"Global": ["true"], "MachineMetadata": ["role=worker", "az=a b", "az=c"]}
    wanted = options["MachineMetadata"]
    assert matches_metadata(wanted, {"role": "worker", "az": "c"})
    assert matches_metadata(wanted, {"role": "worker", "az": "a b"})
    assert not matches_metadata(wanted, {"role": "worker", "az": "b"})
    assert not matches_metadata(wanted, {"az": "c"})
    assert matches_metadata([], {})


def test_unreadable_listings_and_metadata_are_errors_naming_the_line() -> None:
    with pytest.raises(ValueError, match=r"expected 6 columns .* got 2 in line 'a.service\\tb'"):
        parse_list_units("a.service\tb\n")
    with pytest.raises(ValueError, match="'region' is not key=value"):
        parse_metadata("az=us-west-1a,region")
    assert parse_list_units("\n") == []


# -- machines without fleet, and the seed's fleet on nspawn machines ------------------------


def test_a_local_machine_has_no_fleet_and_says_what_to_use(coreos_cluster_factory) -> None:
    with coreos_cluster_factory(instances=1) as cluster:
        fleet = cluster.fleet
        assert fleet is cluster.fleet  # kept: it looks for fleetctl once
        assert fleet.machine is cluster["core-01"]
        with pytest.raises(FleetError) as raised:
            fleet.list_units()
        message = str(raised.value)
        assert raised.value.machine == "core-01"
        assert "the machine has no fleetctl" in message
        assert "no systemd, so no fleet can run there" in message
        assert "--coreos-provider=nspawn (or vagrant) with --coreos-fleet=PATH|URL" in message
        with pytest.raises(FleetError, match="the machine has no fleetctl"):
            fleet.submit(("hello.service", "[Service]\nExecStart=/bin/true\n"))


@pytest.mark.needs_root
def test_nspawn_machines_given_no_fleet_say_how_to_give_it(coreos_cluster_factory) -> None:
    with coreos_cluster_factory(instances=1, provider="nspawn") as cluster:
        # The seed's user-data starts fleet: the summary says once how to give it.
        (notice,) = [n for n in cluster.notices if "fleet" in n]
        assert notice.startswith("the user-data starts fleet, but the machines have none: ")
        assert "--coreos-fleet=PATH|URL (ini coreos_fleet)" in notice
        # fleet's units are there, skipped (not failed) for want of fleetd.
        machine = cluster["core-01"]
        assert machine.systemd.status("fleet.socket").active
        assert not machine.systemd.status("fleet.service").failed
        with pytest.raises(FleetError) as raised:
            cluster.fleet.list_machines()
        message = str(raised.value)
        assert "the machine has no fleetctl" in message
        assert "--coreos-fleet=PATH|URL (ini coreos_fleet)" in message
        assert "retired by CoreOS in 2018" in message
        # The image carries curl, which users' units and tests expect.
        assert machine.ssh.run(["curl", "--version"]).stdout.startswith("curl ")


@pytest.mark.needs_root
def test_the_seeds_user_data_runs_real_fleet_on_nspawn_machines(
    coreos_cluster_factory, fleet_release: str
) -> None:
    with coreos_cluster_factory(instances=3, provider="nspawn", fleet=fleet_release) as cluster:
        assert cluster.spec.user_data is None  # the seed's own
        assert "fleet" in cluster.timings  # ready once fleet listed every machine
        assert not [n for n in cluster.notices if "fleet" in n]
        for machine in cluster:
            assert machine.systemd.is_active("fleet.service")
            assert machine.ssh.run(["fleetctl", "--version"]).stdout == (
                "fleetctl version v1.0.0\n"
            )
            drop_in = machine.ssh.read_text("/run/systemd/system/fleet.service.d/20-cloudinit.conf")
            assert f'Environment="FLEET_PUBLIC_IP={machine.public_ipv4}"' in drop_in
            assert f'"FLEET_ETCD_SERVERS=http://{machine.public_ipv4}:4001"' in drop_in
            # Read-only, from the release: not part of the image.
            assert not machine.ssh.run("touch /usr/bin/fleetd", check=False).ok
        listed = cluster.fleet.list_machines()
        assert sorted(m.ip for m in listed) == sorted(m.public_ipv4 for m in cluster)
        # As on CoreOS, fleetctl needs no privileges (Vagrant's login is not root).
        unprivileged = cluster["core-02"].ssh.run(
            ["runuser", "-u", "nobody", "--", "fleetctl", "list-machines", "--no-legend"]
        )
        assert len(unprivileged.stdout.splitlines()) == 3


# -- the commands, end to end over SSH, against a stand-in fleetctl -------------------------

# Answers as fleetctl does, in the column order Fleet asks for, from units kept as files in
# $STATE/units (with the address of the machine that loaded or started them); records each
# call (the machine's address, then argv) one per line, arguments separated by \037; and
# copies what "submit" is given.
STAND_IN = r"""#!/bin/sh
STATE=@STATE@
MACHINE_ID=4d389537d9d14bdabe8be54a9c29f68d
HASH=a0f275d46bc6ee0eca06be7c339913c07d99c0c7
address=$(echo "$SSH_CONNECTION" | cut -d' ' -f3)
printf '%s\037' "$address" "$0" "$@" >> "$STATE/argv"
printf '\n' >> "$STATE/argv"
while case $1 in --*) true ;; *) false ;; esac; do shift; done
command=$1
shift
mkdir -p "$STATE/units" "$STATE/submitted"
for name in "$@"; do
    case $command:$name in
        *:--*) ;;
        submit:*) cp "$name" "$STATE/submitted/" ;;
        load:*) echo "inactive dead $address" > "$STATE/units/$name" ;;
        start:stuck*) echo "activating start-pre $address" > "$STATE/units/$name" ;;
        start:*) echo "active running $address" > "$STATE/units/$name" ;;
        stop:*) echo "inactive dead $address" > "$STATE/units/$name" ;;
        unload:* | destroy:*) rm -f "$STATE/units/$name" ;;
    esac
done
case $command in
    list-units)
        for file in "$STATE"/units/*; do
            [ -e "$file" ] || continue
            read -r active sub where < "$file"
            printf '%s\t\t%s/%s\t%s\t%s\tloaded\t%s\n' \
                "${file##*/}" "$MACHINE_ID" "$where" "$active" "$sub" "$HASH"
        done ;;
    list-unit-files)
        for file in "$STATE"/submitted/*; do
            [ -e "$file" ] || continue
            printf '%s\t%s\tlaunched\tlaunched\t%s/%s\n' \
                "${file##*/}" "$HASH" "$MACHINE_ID" "$address"
        done ;;
    list-machines) printf '%s\t%s\tregion=test,role=stand-in\n' "$MACHINE_ID" "$address" ;;
    status)
        read -r active sub where < "$STATE/units/$1"
        printf '%s - stand-in\n   Active: %s (%s)\n' "$1" "$active" "$sub"
        [ "$active" = active ] || exit 3 ;;
    journal) printf 'journal of %s: %s\n' "$2" "$1" ;;
    submit | load | start | stop | unload | destroy) ;;
    *) echo "Unknown command $command" >&2; exit 1 ;;
esac
"""


def _calls(state: Path) -> list[list[str]]:
    """Each stand-in call: the machine's address, then fleetctl's argv."""
    lines = (state / "argv").read_text().splitlines()
    return [line.split("\037")[:-1] for line in lines]


def test_commands_reach_fleetctl_stand_in_script_over_ssh(
    coreos_cluster_factory, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    script = tmp_path / "bin" / "fleetctl"
    script.parent.mkdir()
    script.write_text(STAND_IN.replace("@STATE@", str(state)))
    script.chmod(0o755)
    local_unit = tmp_path / "goodbye.service"
    local_unit.write_text("[Service]\nExecStart=/bin/sleep infinity\n")
    hello = textwrap.dedent("""\
        [Unit]
        Description=Hello 'world' $HOME `id`

        [Service]
        ExecStart=/bin/sh -c "while true; do echo \\"Hello, world\\"; sleep 1; done"

        [X-Fleet]
        Conflicts=hello@*.service
        MachineMetadata=region=test
    """)
    prefix = "/fleet keys/$HOME"
    with coreos_cluster_factory(instances=2) as cluster:
        core1, core2 = cluster.machines
        fleet = Fleet(
            cluster,
            fleetctl=str(script),
            endpoint="http://127.0.0.1:2379",
            etcd_key_prefix=prefix,
            request_timeout=2.5,
            timeout=10,
        )
        options = ["--endpoint=http://127.0.0.1:2379", f"--etcd-key-prefix={prefix}"]
        options.append("--request-timeout=2.5")

        assert fleet.submit(("hello.service", hello), local_unit) == [
            "hello.service",
            "goodbye.service",
        ]
        # Handed over unchanged, under the unit's own name, from a folder then removed.
        assert (state / "submitted" / "hello.service").read_text() == hello
        assert (state / "submitted" / "goodbye.service").read_text() == local_unit.read_text()
        (submit,) = _calls(state)
        assert submit[:6] == [core1.private_ipv4, str(script), *options, "submit"]
        assert [Path(p).name for p in submit[6:]] == ["hello.service", "goodbye.service"]
        assert not Path(submit[6]).parent.exists()

        fleet.load("hello.service")
        fleet.start("hello.service", "goodbye.service")
        # A wait lists the units, then the unit files (is any of them global?).
        assert _calls(state)[1:5] == [
            [core1.private_ipv4, str(script), *options, "load", "--no-block", "hello.service"],
            [
                core1.private_ipv4,
                str(script),
                *options,
                "list-units",
                "--no-legend",
                "--full",
                "--fields=unit,machine,active,sub,load,hash",
            ],
            [
                core1.private_ipv4,
                str(script),
                *options,
                "list-unit-files",
                "--no-legend",
                "--full",
                "--fields=unit,hash,dstate,state,target",
            ],
            [
                core1.private_ipv4,
                str(script),
                *options,
                "start",
                "--no-block",
                "hello.service",
                "goodbye.service",
            ],
        ]
        units = fleet.list_units()
        assert [(u.unit, u.active, u.sub, u.load) for u in units] == [
            ("goodbye.service", "active", "running", "loaded"),
            ("hello.service", "active", "running", "loaded"),
        ]
        assert {(u.machine_id, u.machine_ip, u.hash) for u in units} == {
            (MACHINE_ID, core1.private_ipv4, FULL_HASH)
        }
        assert [(f.unit, f.state, f.machine_ip) for f in fleet.list_unit_files()] == [
            ("goodbye.service", "launched", core1.private_ipv4),
            ("hello.service", "launched", core1.private_ipv4),
        ]
        assert fleet.list_machines() == [
            FleetMachine(MACHINE_ID, core1.private_ipv4, {"region": "test", "role": "stand-in"})
        ]
        assert "Active: active (running)" in fleet.status("hello.service")
        assert fleet.journal("hello.service", lines=5) == "journal of hello.service: --lines=5\n"

        # Arguments reach fleetctl as they were given, nothing the shell would expand.
        odd = "odd@$(touch${IFS}pwned);'\"`id`.service"
        fleet.start(odd)
        assert _calls(state)[-3][-3:] == ["start", "--no-block", odd]
        assert not (Path.home() / "pwned").exists()

        # Stopped, status exits 3 as systemctl does, and is still the answer.
        fleet.stop("hello.service")
        assert "Active: inactive (dead)" in fleet.status("hello.service")
        fleet.unload("goodbye.service")
        fleet.destroy("hello.service")
        assert [u.unit for u in fleet.list_units()] == [odd]
        # These three leave the waiting to fleetctl itself (no --no-block).
        commands = [call[5:] for call in _calls(state)]
        assert ["stop", "hello.service"] in commands
        assert ["unload", "goodbye.service"] in commands
        assert ["destroy", "hello.service"] in commands

        # A unit that never gets active: the error says which and shows the last listing.
        with pytest.raises(FleetError) as raised:
            fleet.start("stuck.service", timeout=0.5)
        message = str(raised.value)
        assert message.startswith("fleet on core-01: units not active within 0.5s")
        assert "stuck.service (activating/start-pre)" in message
        assert "--- last fleetctl list-units ---" in message
        assert f"stuck.service {MACHINE_ID}/{core1.private_ipv4} loaded/activating/start-pre" in (
            message
        )
        assert fleet.wait_for_units(["stuck.service"], "start-pre", timeout=5)[0].sub == (
            "start-pre"
        )

        # On another machine: run there, and a unit's status is read where the unit is.
        on_core2 = fleet.on("core-02")
        assert on_core2.machine is core2
        on_core2.start("ping.service")
        assert _calls(state)[-3][0] == core2.private_ipv4
        assert [u.machine_ip for u in on_core2.list_units() if u.unit == "ping.service"] == [
            core2.private_ipv4
        ]
        fleet.status("ping.service")
        assert _calls(state)[-1][0] == core2.private_ipv4  # fleet on core-01, status on core-02

        # A failing fleetctl is a FleetError with its status and stderr.
        with pytest.raises(FleetError, match=r"exited with status 1; stderr:\nUnknown command"):
            fleet.run("no-such-command")


def test_unit_names_with_a_folder_are_refused(coreos_cluster_factory) -> None:
    with (
        coreos_cluster_factory(instances=1) as cluster,
        pytest.raises(ValueError, match=r"'\.\./x\.service' is not a unit name"),
    ):
        cluster.fleet.submit(("../x.service", ""))


@pytest.mark.needs_root
def test_a_fleet_that_never_registers_fails_the_boot_with_fleetds_journal(
    coreos_cluster_factory, fleet_release: str, tmp_path: Path
) -> None:
    user_data = tmp_path / "user-data"
    user_data.write_text(
        textwrap.dedent("""\
            #cloud-config
            coreos:
              etcd2:
                advertise-client-urls: http://$private_ipv4:2379
                listen-client-urls: http://0.0.0.0:2379
              fleet:
                etcd-servers: http://127.0.0.1:1
              units:
                - name: etcd2.service
                  command: start
                - name: fleet.service
                  command: start
        """)
    )
    with pytest.raises(FleetError) as raised:
        coreos_cluster_factory(
            instances=1, provider="nspawn", fleet=fleet_release, user_data=user_data, boot_timeout=8
        )
    message = str(raised.value)
    assert "fleet on core-01: fleet did not list 1 machines within 8s: " in message
    assert "--- journal of fleet.service ---" in message
    assert "127.0.0.1:1" in message  # fleetd saying which etcd it cannot reach
