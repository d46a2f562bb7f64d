"""A private single-node Slurm cluster for tests: munged, slurmctld and slurmd.

Started only where the daemons are installed (Debian: ``apt-get install slurm-wlm
munge``) and the tests run as root; elsewhere the ``slurm_cluster`` fixture skips with
the reason. Everything is private to one temporary folder: slurm.conf (reached through
SLURM_CONF), state, spool and log folders, free loopback ports, and a munged with its
own key and socket (slurm.conf points at it with AuthInfo=socket=...), so a real cluster
or munged on the machine is never touched. The node is this host (CPUs=2). Teardown
cancels the jobs and stops every daemon it started, by pid.
"""
import os
import shutil
import socket
import subprocess
import tempfile
import time

import pytest

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "squeue", "scontrol", "scancel", "sinfo")
CPUS = 2


def unavailable():
    """Why no private cluster can start here, or None."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "the Slurm tests start slurmd/slurmctld/munged and need root"
    missing = [p for p in DAEMONS + CLIENTS if shutil.which(p) is None]
    if missing:
        return (f"not installed: {', '.join(missing)} (Debian: apt-get install -y "
                "slurm-wlm munge)")
    return None


def _free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


class SlurmCluster:
    """``env``: the environment for Slurm commands (SLURM_CONF set)."""

    def __init__(self):
        # Not under pytest's tmp_path: munged wants every folder above its socket
        # searchable by all, and pytest's are private (0700).
        self.folder = tempfile.mkdtemp(prefix="slurm-test-")
        os.chmod(self.folder, 0o755)
        self.node = socket.gethostname().split(".")[0]
        self.procs = {}
        self.env = dict(os.environ, SLURM_CONF=os.path.join(self.folder, "slurm.conf"))

    def path(self, *parts):
        return os.path.join(self.folder, *parts)

    def _write_config(self):
        for sub, mode in (("munge", 0o700), ("run", 0o755), ("state", 0o755),
                          ("spool", 0o755), ("log", 0o755)):
            os.makedirs(self.path(sub), mode=mode)
            os.chmod(self.path(sub), mode)
        with open(self.path("munge", "munge.key"), "wb") as f:
            f.write(os.urandom(1024))
        os.chmod(self.path("munge", "munge.key"), 0o400)
        ctld_port, slurmd_port = _free_ports(2)
        conf = f"""\
ClusterName=sweeptest
SlurmctldHost={self.node}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={self.path("run", "munge.sock")}
SlurmUser=root
SlurmdUser=root
StateSaveLocation={self.path("state")}
SlurmdSpoolDir={self.path("spool")}
SlurmctldPidFile={self.path("run", "slurmctld.pid")}
SlurmdPidFile={self.path("run", "slurmd.pid")}
SlurmctldLogFile={self.path("log", "slurmctld.log")}
SlurmdLogFile={self.path("log", "slurmd.log")}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
SlurmdParameters=config_overrides
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
SwitchType=switch/none
KillWait=10
MinJobAge=600
NodeName={self.node} NodeAddr=127.0.0.1 CPUs={CPUS} State=UNKNOWN
PartitionName=debug Nodes={self.node} Default=YES MaxTime=INFINITE State=UP
"""
        with open(self.env["SLURM_CONF"], "w") as f:
            f.write(conf)

    def _start(self, name, argv):
        log = open(self.path("log", f"{name}.out"), "ab")
        self.procs[name] = subprocess.Popen(argv, env=self.env, stdout=log,
                                            stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL)
        log.close()

    def _wait(self, what, check, timeout):
        deadline = time.time() + timeout
        while time.time() < deadline:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited with {proc.returncode}; "
                                       f"see {self.path('log')}")
            if check():
                return
            time.sleep(0.3)
        raise RuntimeError(f"timed out waiting for {what}; see {self.path('log')}")

    def run(self, *argv, check=True):
        return subprocess.run(list(argv), env=self.env, capture_output=True, text=True,
                              check=check, timeout=60)

    def start(self):
        self._write_config()
        sock = self.path("run", "munge.sock")
        self._start("munged", ["munged", "--foreground", f"--socket={sock}",
                               f"--key-file={self.path('munge', 'munge.key')}",
                               f"--pid-file={self.path('run', 'munged.pid')}",
                               f"--log-file={self.path('log', 'munged.log')}",
                               f"--seed-file={self.path('munge', 'munged.seed')}"])
        self._wait("munged", lambda: os.path.exists(sock), 20)
        self._start("slurmctld", ["slurmctld", "-D", "-i"])
        self._wait("slurmctld", lambda: self.run("scontrol", "ping", check=False)
                   .stdout.count("UP") > 0, 30)
        self._start("slurmd", ["slurmd", "-D", "-N", self.node])
        self._wait("an idle node", lambda: self.run("sinfo", "-h", "-o", "%T", check=False)
                   .stdout.strip() == "idle", 60)
        return self

    def stop(self):
        """Cancel every job, let slurmd see its steps end, then stop the daemons."""
        if "slurmctld" in self.procs and self.procs["slurmctld"].poll() is None:
            self.run("scancel", "--user", "root", check=False)
            deadline = time.time() + 30
            while time.time() < deadline and self.run(
                    "squeue", "-h", check=False).stdout.strip():
                time.sleep(0.5)
        for name in reversed(DAEMONS):
            proc = self.procs.get(name)
            if proc is None or proc.poll() is not None:
                continue
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(self.folder, ignore_errors=True)


@pytest.fixture(scope="module")
def slurm_cluster():
    reason = unavailable()
    if reason:
        pytest.skip(reason)
    cluster = SlurmCluster()
    try:
        cluster.start()
    except BaseException:
        cluster.stop()
        raise
    yield cluster
    cluster.stop()
