"""Shared test setup: offline, temporary data/runs folders, a tiny dataset catalogue."""

from __future__ import annotations

import os

# Nothing may download in tests.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def session_data_root(tmp_path_factory):
    """One data root for the whole session, so simulated datasets are generated once."""
    root = tmp_path_factory.mktemp("bench-data")
    return root


def _needs(item, fixture: str) -> bool:
    return fixture in getattr(item, "fixturenames", ())


def pytest_collection_modifyitems(session, config, items):
    """The tests that need the simulator-trained networks run last, so that the others run while those networks
    train in a background process (``_sim_training``)."""
    later = [item for item in items if _needs(item, "sim_weights")]
    if later:
        items[:] = [item for item in items if not _needs(item, "sim_weights")] + later


class _BackgroundTraining:
    """`bench weights train-sim` in a child process. Its trainers use one torch thread whatever else runs (that is what
    makes their files the same bytes), so it takes one core while the other tests use the other: those run with one
    torch thread meanwhile (here and, through OMP_NUM_THREADS, in the processes they start), because two threads on
    one free core spin-wait for each other."""

    def __init__(self, folder, log):
        import subprocess
        import sys

        import torch

        self.folder, self.log = folder, log
        env = {**os.environ, "BENCH_WEIGHTS": str(folder)}
        code = "from bench.networks import simtrain; simtrain.train_sim(seed=0)"
        with open(log, "wb") as out:
            self.proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=out, stderr=subprocess.STDOUT)
        self.threads, self.omp = torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS")
        torch.set_num_threads(1)
        os.environ["OMP_NUM_THREADS"] = "1"
        self.restored = False

    def restore(self) -> None:
        """Give the tests both cores again (between tests, once the training has ended)."""
        import torch

        if not self.restored:
            torch.set_num_threads(self.threads)
            if self.omp is None:
                os.environ.pop("OMP_NUM_THREADS", None)
            else:
                os.environ["OMP_NUM_THREADS"] = self.omp
            self.restored = True

    def poll(self) -> None:
        if not self.restored and self.proc.poll() is not None:
            self.restore()

    def wait(self):
        code = self.proc.wait()
        self.restore()
        if code != 0:
            tail = "\n".join(self.log.read_text(errors="replace").splitlines()[-20:])
            pytest.fail(f"training the sim networks failed (exit {code}; log {self.log}):\n{tail}", pytrace=False)
        return self.folder

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.restore()


@pytest.fixture(scope="session", autouse=True)
def _sim_training(request, tmp_path_factory):
    """Starts training the sim networks at the beginning of a session that has tests needing them (see
    ``sim_weights``); Park's simulator networks, which depend on the thread count, are trained first as before."""
    if not any(_needs(item, "sim_weights") for item in request.session.items):
        yield None
        return
    if any(_needs(item, "park_sim_folder") for item in request.session.items):
        request.getfixturevalue("park_sim_folder")
    folder = tmp_path_factory.mktemp("sim-weights")
    job = _BackgroundTraining(folder, folder.parent / "sim-weights-training.log")
    yield job
    job.stop()


@pytest.fixture(scope="session")
def sim_weights(_sim_training):
    """All built-in sim networks trained with their real settings (what `bench weights train-sim` does), once per
    session: the simulator tests and the drift check over every method share them. ``_sim_training`` started them
    for every session that has a test asking for this fixture."""
    return _sim_training.wait()


@pytest.fixture(scope="session")
def empty_weights_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("no-weights")


@pytest.fixture(scope="session")
def park_sim_folder(empty_weights_dir):
    """Park's simulator-trained networks (seed 0), trained once per session in the folder where the ordinary tests
    look for them (Park's contract and layout tests run with no weights): the drift check links to the same files
    instead of training them a second time (about a minute on 2 cores)."""
    from bench.networks import park_sim

    mp = pytest.MonkeyPatch()
    mp.setenv("BENCH_WEIGHTS", str(empty_weights_dir))
    try:
        folder, _ = park_sim.sim_weights(0)
    finally:
        mp.undo()
    return folder


@pytest.fixture(autouse=True)
def _isolated_env(request, monkeypatch, session_data_root, empty_weights_dir, tmp_path, _sim_training):
    if _sim_training is not None:
        _sim_training.poll()
    monkeypatch.setenv("BENCH_DATA", str(session_data_root))
    monkeypatch.setenv("BENCH_RUNS", str(tmp_path / "runs"))
    if request.node.get_closest_marker("weights") is None:
        # A developer's real weights must not leak into ordinary tests (they assert "unavailable").
        empty = empty_weights_dir
        monkeypatch.setenv("BENCH_WEIGHTS", str(empty))
        monkeypatch.setenv("HF_HUB_CACHE", str(empty))
        for key in [k for k in os.environ if k.startswith("BENCH_WEIGHT_")]:
            monkeypatch.delenv(key)
    for key in ("BENCH_PANNS_WEIGHTS", "BENCH_VGGISH_WEIGHTS", "BENCH_CLAP_WEIGHTS"):
        monkeypatch.delenv(key, raising=False)
    # Simulated datasets would train the simulator's networks on first use (minutes); tests that want them
    # train them in a fixture (tests/test_simtrain.py) and set BENCH_SIM_WEIGHTS themselves.
    monkeypatch.setenv("BENCH_SIM_WEIGHTS", "off")
    yield


TINY_CATALOGUE = """
groups:
  sim: [tiny-sound, tiny-speech]
datasets:
  tiny-sound:
    kind: simulated
    version: "t1"
    title: tiny simulated sound
    generator: sound
    seed: 7
    mirrors: brain2sound
    subjects: [sim01, sim02]
    sample_rate: 16000
    clip_seconds: 4.0
    n_patch: 208
    label_kind: sound category
    params: {params_sound}
  tiny-speech:
    kind: simulated
    version: "t1"
    title: tiny simulated speech
    generator: speech
    seed: 7
    mirrors: brain2speech
    subjects: [sim01]
    sample_rate: 16000
    clip_seconds: 2.0
    n_patch: 112
    label_kind: speaker gender
    probe_groups: none
    text_prompts: {{male: "man speaking", female: "woman speaking"}}
    params: {params_speech}
  brain2sound:
    kind: real
    version: "1.0"
    title: Brain2Sound
    prepare: "bench data prepare brain2sound --source SOUNDRECON_DIR --stimuli VGGSOUND_DIR"
    preparer: bench.prepare.brain2sound
    subjects: [S1]
    sample_rate: 16000
    clip_seconds: 4.0
    n_patch: 208
    label_kind: sound category
    reported:
      table: "Table 1"
      rows:
        LiR: {{pcc: 0.607, psnr: 17.506, fd: 105.113, fad: 40.877, kl: 4.027, clap: 0.175}}
"""


@pytest.fixture
def tiny_catalogue(tmp_path, monkeypatch):
    """A catalogue of two very small simulated datasets (and one unprepared real one)."""
    import json

    from bench import datasets
    from tests.sim_sizes import TINY_SOUND, TINY_SPEECH

    path = tmp_path / "datasets.yaml"
    path.write_text(
        TINY_CATALOGUE.format(params_sound=json.dumps(TINY_SOUND), params_speech=json.dumps(TINY_SPEECH)),
        encoding="utf-8",
    )
    monkeypatch.setenv("BENCH_DATASETS_YAML", str(path))
    datasets._read_catalogue.cache_clear()
    yield path
    datasets._read_catalogue.cache_clear()


SMALL_CATALOGUE = """
groups:
  sim: [small-sound]
datasets:
  small-sound:
    kind: simulated
    version: "s1"
    title: very small simulated sound (backbone methods)
    generator: sound
    seed: 3
    mirrors: brain2sound
    subjects: [sim01]
    sample_rate: 16000
    clip_seconds: 4.0
    n_patch: 208
    label_kind: sound category
    params: {params}
"""


@pytest.fixture
def small_catalogue(tmp_path, monkeypatch):
    """One very small simulated sound dataset, ``small-sound``, for the methods with backbones."""
    import json

    from bench import datasets
    from tests.sim_sizes import SMALL_SOUND

    path = tmp_path / "datasets.yaml"
    path.write_text(SMALL_CATALOGUE.format(params=json.dumps(SMALL_SOUND)), encoding="utf-8")
    monkeypatch.setenv("BENCH_DATASETS_YAML", str(path))
    datasets._read_catalogue.cache_clear()
    yield path
    datasets._read_catalogue.cache_clear()


@pytest.fixture
def one_torch_thread():
    """On an oversubscribed 2-core machine torch's intra-op threads spin-wait (10-20x slower): use one."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


from tests.report_records import report_runs  # noqa: E402,F401  (session fixture of the report tests)
