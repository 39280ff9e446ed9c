"""A real single-node SLURM cluster for the workflow tests (`slurm_cluster`), and running the
workflow on it through a filled-in copy of profiles/slurm (`make_slurm_workflow`).

The cluster is Debian's Slurm (slurmctld, slurmd, munge; installed with apt when missing),
started directly (no systemd) as root, with its configuration, state and logs in a temporary
folder. slurmd runs "configless" (it fetches slurm.conf from slurmctld and links it at
/run/slurm/conf): the SLURM jobstep plugin drops SLURM_CONF from the environment of the `srun`
it starts inside each job, so the job step finds the configuration only at a default place, and
/etc/slurm is left alone. There is no accounting database, so `sacct` fails: the workflow runs
with `slurm-status-command: squeue` and MinJobAge=3600.

Where the cluster cannot run (not root, not Debian with apt, the install fails, another Slurm on
the machine) the tests are skipped with the reason, except in CI (CI=true), where they fail.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

import pytest

ROOT = Path(__file__).resolve().parents[2]
SNAKEFILE = ROOT / "Snakefile"
SLURM_PROFILE = ROOT / "profiles" / "slurm"

PACKAGES = ("slurmctld", "slurmd", "slurm-client", "munge")
DAEMONS = ("slurmctld", "slurmd", "munged", "munge", "sbatch", "squeue", "scontrol", "scancel",
           "sinfo")
SBIN = ("/usr/sbin", "/sbin", "/usr/bin", "/bin")
PARTITION = "hrcam_cpu"          # the only partition, and not a default: a job gets there only
ACCOUNT = "hrcam_test"           # when its sbatch call names it
MIN_CPUS = 2                     # the node offers at least this (the test config's threads) and
MIN_MEMORY_MB = 8192             # this memory (retries double it), whatever the machine has
START_TIMEOUT = 90               # seconds for the node to become idle
ACTIVE = ("PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "SUSPENDED")   # job states
RUN_CONF = Path("/run/slurm/conf")   # where configless slurmd links its configuration
MUNGED_LOG = Path("/var/log/munge/munged.log")


def unavailable(reason: str) -> NoReturn:
    """Skip with the reason, or fail in CI (CI=true), where a skipped test would hide a gap."""
    message = f"SLURM test cluster unavailable: {reason}"
    print(message, file=sys.stderr)
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message + " (CI=true: failing instead of skipping)", pytrace=False)
    pytest.skip(message)


def tail(path: Path, chars: int = 4000) -> str:
    """The end of a log file with a header line, or nothing when it does not exist."""
    if not path.is_file():
        return ""
    return f"--- {path} ---\n{path.read_text(errors='replace')[-chars:]}\n"


def which(name: str) -> str | None:
    return shutil.which(name, path=os.pathsep.join([os.environ.get("PATH", ""), *SBIN]))


def run(cmd: list[str], env: dict[str, str] | None = None, timeout: float = 60,
        check: bool = True) -> subprocess.CompletedProcess:
    """A short command, output captured; raises with its output when `check` and it fails."""
    result = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                            env=env, timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited with {result.returncode}:\n"
                           f"{result.stdout}{result.stderr}")
    return result


# ---------------------------------------------------------------------------------------------
# Installing and starting
# ---------------------------------------------------------------------------------------------


def install_packages() -> None:
    """apt-get install the packages when a program is missing (apt-get update first only when
    the install fails, e.g. on a machine whose package lists were never fetched). The packages'
    services are kept from starting (policy-rc.d): the fixture starts its own daemons."""
    if all(which(name) for name in DAEMONS):
        return
    if not (Path("/etc/debian_version").exists() and which("apt-get")):
        unavailable(f"{', '.join(PACKAGES)} are not installed and this is not Debian with apt")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    policy = Path("/usr/sbin/policy-rc.d")
    own_policy = not policy.exists()
    if own_policy:
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
    try:
        install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *PACKAGES]
        result = run(install, env=env, timeout=900, check=False)
        if result.returncode != 0:
            run(["apt-get", "update", "-q"], env=env, timeout=600, check=False)
            result = run(install, env=env, timeout=900, check=False)
    finally:
        if own_policy:
            policy.unlink()
    if result.returncode != 0:
        unavailable(f"`{' '.join(install)}` failed:\n{(result.stdout + result.stderr)[-3000:]}")
    missing = [name for name in DAEMONS if not which(name)]
    if missing:
        unavailable(f"installed {', '.join(PACKAGES)} but {', '.join(missing)} not found")


def munge_works() -> bool:
    return run([which("munge"), "-n"], check=False).returncode == 0


def start_munged(folder: Path) -> subprocess.Popen | None:
    """Start munged (as user munge, in the foreground) unless one already answers; returns the
    process it started, or None when it reused a running one. Creates the key if missing."""
    if munge_works():
        return None
    key = Path("/etc/munge/munge.key")
    if not key.exists():
        key.parent.mkdir(mode=0o700, exist_ok=True)
        run([which("mungekey"), "--create", f"--keyfile={key}"])
        shutil.chown(key.parent, "munge", "munge")
        shutil.chown(key, "munge", "munge")
        key.chmod(0o400)
    socket_dir = Path("/run/munge")
    socket_dir.mkdir(mode=0o755, exist_ok=True)
    shutil.chown(socket_dir, "munge", "munge")
    with (folder / "munged.log").open("w") as log:
        process = subprocess.Popen([which("munged"), "--foreground"], stdin=subprocess.DEVNULL,
                                   stdout=log, stderr=subprocess.STDOUT, user="munge",
                                   group="munge", extra_groups=[], start_new_session=True)
    deadline = time.time() + 20
    while not munge_works():
        if process.poll() is not None or time.time() > deadline:
            stop(process)
            raise RuntimeError("munged did not start:\n" + tail(folder / "munged.log")
                               + tail(MUNGED_LOG))
        time.sleep(0.2)
    return process


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def node_hardware() -> tuple[int, int]:
    """CPUs and memory (MB) as slurmd sees them (`slurmd -C`)."""
    text = run([which("slurmd"), "-C"]).stdout
    cpus = int(re.search(r"\bCPUs=(\d+)", text).group(1))
    memory = int(re.search(r"\bRealMemory=(\d+)", text).group(1))
    return cpus, memory


def write_slurm_conf(folder: Path, node: str, cpus: int, memory_mb: int) -> tuple[Path, int]:
    """slurm.conf of a one-node cluster in `folder`; returns it and slurmctld's port."""
    ctld_port = free_port()
    (folder / "state").mkdir()
    (folder / "spool").mkdir()
    conf = folder / "slurm.conf"
    conf.write_text(f"""\
ClusterName=hrcamtest
SlurmctldHost={node}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={free_port()}
SlurmctldParameters=enable_configless
SlurmUser=root
AuthType=auth/munge
StateSaveLocation={folder / "state"}
SlurmdSpoolDir={folder / "spool"}
SlurmctldPidFile={folder / "slurmctld.pid"}
SlurmdPidFile={folder / "slurmd.pid"}
MailProg=/bin/true
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
# squeue reports finished jobs for an hour (the plugin's squeue status needs >= 120 s)
MinJobAge=3600
ReturnToService=2
KillWait=10
# the node's CPUs and memory below are a floor for the tests, not the hardware's
SlurmdParameters=config_overrides
NodeName={node} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory_mb} State=UNKNOWN
PartitionName={PARTITION} Nodes={node} Default=NO MaxTime=INFINITE State=UP
""")
    return conf, ctld_port


def foreign_slurm() -> str | None:
    """Why a Slurm of this machine would get in the way, or None."""
    if Path("/etc/slurm/slurm.conf").exists():
        return ("/etc/slurm/slurm.conf exists: job steps would read that cluster's "
                "configuration instead of the test cluster's")
    for comm in Path("/proc").glob("[0-9]*/comm"):
        try:
            name = comm.read_text().strip()
        except OSError:
            continue
        if name in ("slurmd", "slurmctld"):
            return f"a {name} is already running (pid {comm.parent.name})"
    return None


def stop(process: subprocess.Popen | None, timeout: float = 20) -> None:
    """Terminate one process we started (SIGTERM, then SIGKILL)."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


# ---------------------------------------------------------------------------------------------
# The cluster
# ---------------------------------------------------------------------------------------------


def parse_scontrol(text: str) -> dict[str, str]:
    """`scontrol -o show ...` output (Key=Value ...) as a dict; a value with spaces continues
    until the next Key=."""
    fields: dict[str, str] = {}
    last = None
    for token in text.split():
        key, sep, value = token.partition("=")
        if sep and re.fullmatch(r"[A-Za-z][\w:/]*", key):
            fields[key] = value
            last = key
        elif last is not None:
            fields[last] += " " + token
    return fields


@dataclass
class SlurmCluster:
    """A running one-node cluster: its partition, the account jobs are charged to (not
    validated: no accounting), the environment that points clients at it, and helpers."""

    partition: str
    account: str
    node: str
    folder: Path
    env: dict[str, str]
    processes: dict[str, subprocess.Popen | None] = field(default_factory=dict)

    def command(self, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
        return run(list(cmd), env=self.env, check=check)

    def scontrol_show_job(self, jobid: str | int) -> dict[str, str]:
        """`scontrol show job` as a dict (JobState, Partition, TimeLimit, MinMemoryNode, ...)."""
        return parse_scontrol(self.command(which("scontrol"), "-o", "show", "job",
                                           str(jobid)).stdout)

    def squeue(self) -> list[dict[str, str]]:
        """Every job slurmctld knows (running, pending and finished within MinJobAge)."""
        names = ("jobid", "name", "state", "partition", "comment")
        out = self.command(which("squeue"), "--states=all", "--noheader",
                           "--format=%i|%j|%T|%P|%k").stdout
        return [dict(zip(names, line.split("|", 4), strict=False))
                for line in out.splitlines() if line]

    def scancel(self, *jobids: str | int) -> None:
        self.command(which("scancel"), *map(str, jobids))

    def cancel_all(self, timeout: float = 60) -> None:
        """Cancel every job, wait until none is left running (the node is idle again) and kill
        what the jobs left behind."""
        jobs = [job["jobid"] for job in self.squeue() if job["state"] in ACTIVE]
        if jobs:
            self.command(which("scancel"), *jobs, check=False)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if not any(job["state"] in ACTIVE for job in self.squeue()):
                break
            time.sleep(1)
        self.kill_leftovers()

    def kill_leftovers(self) -> None:
        """SIGKILL the processes of finished jobs that outlived them. With
        proctrack/linuxproc a process whose parent died first is no longer seen as part of its
        job, and scancel misses it: the Snakemake of a cancelled job's batch step ignores
        SIGTERM and can stay behind. Found by their environment: SLURM_JOB_ID of a job that is
        no longer active and SLURM_CONF inside this cluster's folder."""
        running = {job["jobid"].encode() for job in self.squeue() if job["state"] in ACTIVE}
        conf = f"SLURM_CONF={self.folder}/".encode()
        for environ in Path("/proc").glob("[0-9]*/environ"):
            try:
                items = environ.read_bytes().split(b"\0")
            except OSError:
                continue
            jobids = [item.removeprefix(b"SLURM_JOB_ID=") for item in items
                      if item.startswith(b"SLURM_JOB_ID=")]
            if jobids and jobids[0] not in running and any(i.startswith(conf) for i in items):
                with contextlib.suppress(OSError):
                    os.kill(int(environ.parent.name), signal.SIGKILL)

    def logs(self) -> str:
        """The end of each daemon's log (for failure messages)."""
        paths = [self.folder / f"{name}.log" for name in ("slurmctld", "slurmd", "munged")]
        return "".join(tail(path) for path in [*paths, MUNGED_LOG])


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    """Install (if needed) and start munged (unless one runs), slurmctld and slurmd; wait for
    the node to be idle; yield a SlurmCluster; stop only the daemons started here."""
    if os.geteuid() != 0:
        unavailable("the daemons must run as root (slurmd, munged's key); run pytest as root")
    install_packages()
    reason = foreign_slurm()
    if reason:
        unavailable(reason)
    folder = tmp_path_factory.mktemp("slurm")
    node = socket.gethostname().split(".")[0]
    cpus, memory = node_hardware()
    conf, ctld_port = write_slurm_conf(folder, node, max(cpus, MIN_CPUS),
                                       max(memory, MIN_MEMORY_MB))
    env = dict(os.environ, SLURM_CONF=str(conf))
    cluster = SlurmCluster(PARTITION, ACCOUNT, node, folder, env)

    def daemon(name: str, *args: str) -> subprocess.Popen:
        with (folder / f"{name}.log").open("w") as log:
            return subprocess.Popen([which(name), "-D", *args], stdin=subprocess.DEVNULL,
                                    stdout=log, stderr=subprocess.STDOUT, env=env,
                                    start_new_session=True)

    try:
        cluster.processes["munged"] = start_munged(folder)
        cluster.processes["slurmctld"] = daemon("slurmctld", "-f", str(conf))
        # configless: slurmd takes its configuration from slurmctld
        cluster.processes["slurmd"] = daemon("slurmd", "-N", node,
                                             "--conf-server", f"127.0.0.1:{ctld_port}")
        deadline = time.time() + START_TIMEOUT
        state = ""
        while state != "idle":
            dead = [name for name, process in cluster.processes.items()
                    if process is not None and process.poll() is not None]
            if dead or time.time() > deadline:
                why = f"{', '.join(dead)} exited" if dead else f"not idle after {START_TIMEOUT} s"
                raise RuntimeError(f"the SLURM node {node!r} did not come up ({why}; sinfo "
                                   f"state {state!r}).\n{cluster.logs()}")
            time.sleep(0.5)
            state = cluster.command(which("sinfo"), "--noheader", "--Node", "--format=%T",
                                    "--partition", PARTITION, check=False).stdout.strip()
    except BaseException:
        shutdown(cluster)
        raise
    yield cluster
    shutdown(cluster)


def shutdown(cluster: SlurmCluster) -> None:
    """Cancel leftover jobs, stop the daemons this session started, remove slurmd's link."""
    slurmctld = cluster.processes.get("slurmctld")
    if slurmctld is not None and slurmctld.poll() is None:
        with contextlib.suppress(RuntimeError, subprocess.SubprocessError):
            cluster.cancel_all(timeout=30)
    for name in ("slurmd", "slurmctld", "munged"):
        stop(cluster.processes.get(name))
    if RUN_CONF.is_symlink() and Path(os.readlink(RUN_CONF)).is_relative_to(cluster.folder):
        RUN_CONF.unlink()


# ---------------------------------------------------------------------------------------------
# The workflow on the cluster
# ---------------------------------------------------------------------------------------------


def workflow_env(cluster: SlurmCluster) -> dict[str, str]:
    """The cluster's environment with this interpreter's bin first (so `hrcam` and `snakemake`
    in the jobs are the ones under test: sbatch exports the environment), CPU-only TensorFlow."""
    env = dict(cluster.env)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.setdefault("CUDA_VISIBLE_DEVICES", "")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env.setdefault("MPLBACKEND", "Agg")
    return env


def cluster_profile(folder: Path, cluster: SlurmCluster) -> Path:
    """profiles/slurm filled in as its comments tell a user to: the placeholders replaced by the
    cluster's account and partition (a CPU-only cluster: its CPU partition for the GPU rules
    too) and the commented `slurm-status-command: squeue` line switched on (no accounting)."""
    text = (SLURM_PROFILE / "config.yaml").read_text()
    for placeholder in ("YOUR_ACCOUNT", "YOUR_CPU_PARTITION", "YOUR_GPU_PARTITION"):
        assert placeholder in text, f"profiles/slurm/config.yaml lost {placeholder}"
    text = (text.replace("YOUR_ACCOUNT", cluster.account)
            .replace("YOUR_CPU_PARTITION", cluster.partition)
            .replace("YOUR_GPU_PARTITION", cluster.partition))
    squeue_line = re.compile(r"^#\s*(slurm-status-command:\s*squeue\b.*)$", re.MULTILINE)
    assert squeue_line.search(text), "profiles/slurm/config.yaml lost the squeue status line"
    text = squeue_line.sub(r"\1", text)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(text)
    return folder


# one job of Snakemake's dry-run output: "rule NAME:" ("localrule" when it runs in Snakemake
# itself) and its indented fields (output: a, b, ...; log: ...)
JOB_BLOCK = re.compile(r"^(local)?rule (\w+):\n((?:[ \t]+\S.*\n?)*)", re.MULTILINE)


@dataclass
class SlurmWorkflow:
    """The workflow in `workdir` on the cluster, through a filled-in copy of profiles/slurm."""

    cluster: SlurmCluster
    profile: Path
    workdir: Path
    # status checks every 10 s instead of 40 s and more: only to keep the test short
    extra_args: tuple[str, ...] = ("--slurm-init-seconds-before-status-checks", "10")
    runs: int = 0
    outputs: dict[int, Path] = field(default_factory=dict)

    def command(self, configfile: Path, *args: str) -> list[str]:
        return [sys.executable, "-m", "snakemake", "--snakefile", str(SNAKEFILE),
                "--directory", str(self.workdir), "--configfile", str(configfile),
                "--workflow-profile", str(self.profile), *self.extra_args, *args]

    def start(self, configfile: Path, *args: str) -> subprocess.Popen:
        """Start Snakemake in its own process group; its output (stdout and stderr) goes to a
        file next to the working directory (a pipe could fill up while nobody reads it)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.runs += 1
        output = self.workdir.parent / f"snakemake_{self.runs}.out"
        with output.open("w") as handle:
            process = subprocess.Popen(self.command(configfile, *args), cwd=self.workdir,
                                       stdin=subprocess.DEVNULL, stdout=handle,
                                       stderr=subprocess.STDOUT, text=True,
                                       env=workflow_env(self.cluster), start_new_session=True)
        self.outputs[process.pid] = output
        return process

    def output(self, process: subprocess.Popen) -> str:
        """What a started Snakemake has printed so far."""
        return self.outputs[process.pid].read_text(errors="replace")

    def stop(self, process: subprocess.Popen) -> None:
        """Kill Snakemake (a Snakemake that lost its jobs ignores SIGTERM) and cancel every
        job on the cluster."""
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        self.cluster.cancel_all()

    def finish(self, process: subprocess.Popen, timeout: float) -> str:
        """Wait for Snakemake and return its output; on timeout stop it and fail with its
        output, the queue and the daemons' logs."""
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            queue = self.cluster.squeue()
            self.stop(process)
            pytest.fail(f"snakemake did not finish in {timeout} s.\n"
                        f"{self.output(process)[-6000:]}\nsqueue: {queue}\n"
                        f"{self.cluster.logs()}", pytrace=False)
        return self.output(process)

    def run(self, configfile: Path, *args: str, timeout: float = 600) -> tuple[int, str]:
        process = self.start(configfile, *args)
        output = self.finish(process, timeout)
        return process.returncode, output

    def planned_jobs(self, configfile: Path) -> list[dict]:
        """The jobs a dry run (-n) plans: [{rule, local, output: [...], log: [...]}], paths
        relative to the working directory; `local`: Snakemake runs it itself, no SLURM job (a
        localrule, or a target-only rule like `all`, which has no output)."""
        returncode, output = self.run(configfile, "--dry-run", timeout=300)
        assert returncode == 0, output[-8000:]
        jobs = []
        for match in JOB_BLOCK.finditer(output):
            fields = dict(re.findall(r"^\s+(\w+): (.*)$", match.group(3), re.MULTILINE))
            job = {key: fields[key].split(", ") if key in fields else []
                   for key in ("output", "log")}
            jobs.append({"rule": match.group(2),
                         "local": bool(match.group(1)) or not job["output"], **job})
        assert jobs, output[-8000:]
        return jobs

    def jobs(self) -> dict[str, list[str]]:
        """{rule: [SLURM job ids, in submission order]} from the plugin's job logs
        (.snakemake/slurm_logs/rule_<rule>/[<wildcards>/]<jobid>.log)."""
        found: dict[str, list[str]] = {}
        for log in (self.workdir / ".snakemake" / "slurm_logs").glob("rule_*/**/*.log"):
            rule = log.relative_to(self.workdir / ".snakemake" / "slurm_logs").parts[0]
            found.setdefault(rule.removeprefix("rule_"), []).append(log.stem)
        return {rule: sorted(ids, key=int) for rule, ids in found.items()}


@pytest.fixture(scope="session")
def make_slurm_workflow(slurm_cluster):
    """A factory: folder -> SlurmWorkflow in folder/work, with the profile copy in
    folder/profile (session-scoped, so that module-scoped fixtures can use it)."""

    def make(folder: Path) -> SlurmWorkflow:
        return SlurmWorkflow(slurm_cluster, cluster_profile(folder / "profile", slurm_cluster),
                             folder / "work")

    return make
