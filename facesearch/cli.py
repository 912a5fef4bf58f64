"""The `facesearch` command: index a folder of photos, query it by photo or description."""
from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path
from typing import Optional

import click
import typer

from facesearch.errors import FaceSearchError, as_flags
from facesearch.settings import DEFAULTS, ENV, Settings, SettingWarning

app = typer.Typer(help="Face similarity search: by photo, by description, or both. Offline.",
                  add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  rich_markup_mode=None)  # help texts show [default: ...] and extras[...] as written

# Flags override the FACESEARCH_* variables, which facesearch.settings.Settings reads (the one
# place that reads the environment); the help names them.
IndexOption = typer.Option(None, "--index",
                           help=f"Index folder [default: ${ENV['index_dir']}, else indexes/default].")
DbOption = typer.Option(None, "--db-url",
                        help=f"SQLAlchemy URL for the metadata [default: ${ENV['db_url']}, else SQLite "
                             "in the index folder].")


def _search(index: Optional[Path], db_url: Optional[str]):
    from facesearch.api import FaceSearch

    return FaceSearch(index, db_url)


def _fail(message: str, code: int = 1) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _check_output(path: Path, flag: str, given: list = ()) -> None:
    """Fail (before any work) unless `path` can be written: its folder exists, it is no folder,
    and it is none of the files the user gave as input (those are never written to)."""
    if path.is_dir():
        _fail(f"{flag} {path} is a folder; give a file name")
    if flag == "--sheet" and path.suffix.lower() not in (".png", ".jpg", ".jpeg", ".html", ".htm"):
        _fail(f"{flag} {path}: a contact sheet is a .png, .jpg or .html file")
    if not path.parent.is_dir():
        _fail(f"{flag} {path}: the folder {path.parent} does not exist")
    if any(g is not None and Path(g).exists() and Path(g).resolve() == path.resolve() for g in given):
        _fail(f"{flag} {path} is an input file; it will not be overwritten")


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            number = version("facesearch")
        except PackageNotFoundError:
            number = "unknown (not installed)"
        typer.echo(f"facesearch {number}")
        raise typer.Exit()


@app.callback()
def _options(show_version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                               help="Print facesearch's version and exit.")) -> None:
    """Face similarity search: by photo, by description, or both. Offline."""


@app.command()
def index(paths: list[Path] = typer.Argument(..., help="Photos or folders (searched recursively)."),
          index: Optional[Path] = IndexOption, db_url: Optional[str] = DbOption,
          quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
          prune: bool = typer.Option(False, "--prune", help="Also drop indexed photos missing from disk anywhere (not only under PATHS)."),
          ray: Optional[str] = typer.Option(None, "--ray", metavar="ADDRESS", help=f"Describe the photos on a Ray cluster: HOST:PORT of its head node, or auto (Ray on this machine); this process commits them [default: ${ENV['ray_address']}, else no Ray]. Needs pip install 'facesearch[ray]'."),
          video_fps: Optional[float] = typer.Option(None, "--video-fps", help=f"Video frames looked at for faces per second [default: ${ENV['video_fps']}, else 2].")) -> None:
    """Index every face in the photos and videos under PATHS; re-runs add only new or changed files."""
    from tqdm import tqdm

    from facesearch.api import FaceSearch
    from facesearch.index.indexer import IndexInterrupted

    fs = (_search(index, db_url) if video_fps is None else
          FaceSearch(index, db_url, settings=Settings.from_env(video_fps=video_fps)))
    # tqdm.write keeps each warning on its own line above the progress bar
    try:
        report = fs.index(paths, progress=not quiet, prune=prune, ray=ray,
                          on_problem=lambda line: tqdm.write(f"warning: {line}", file=sys.stderr))
    except IndexInterrupted as stopped:
        typer.echo(str(stopped), err=True)
        raise typer.Exit(130)
    typer.echo(report.summary())
    if report.photos == 0 and report.skipped:
        typer.echo(f"warning: no photos found; {len(report.skipped)} file(s) not read, e.g. "
                   f"{report.skipped[0][0]} ({report.skipped[0][1]})", err=True)
    elif report.photos == 0 and not report.failed:
        typer.echo(f"warning: no photos found under {', '.join(map(str, paths))}", err=True)
    if report.failed:  # the exit status says whether any file failed (`facesearch info` lists them)
        raise typer.Exit(1)


@app.command()
def check(repair: bool = typer.Option(False, "--repair", help="Fix what can be fixed: rebuild vector files from the database, drop photos missing from disk, salvage a damaged database."),
          index: Optional[Path] = IndexOption, db_url: Optional[str] = DbOption) -> None:
    """Check an index: database integrity, vector files against the database, photo files on disk."""
    report = _search(index, db_url).check(repair=repair)
    for line in report.lines():
        typer.echo(line)
    if not report.ok:
        raise typer.Exit(1)


@app.command()
def relocate(old: Path = typer.Argument(..., help="Where the photos were (a folder, gone or not)."),
             new: Path = typer.Argument(..., help="Where they are now."),
             index: Optional[Path] = IndexOption, db_url: Optional[str] = DbOption) -> None:
    """A photo folder moved: rewrite the paths stored under OLD to NEW (nothing is described again)."""
    changed = _search(index, db_url).relocate(old, new)
    typer.echo(f"relocated {changed} path(s) from {old} to {new}")


@app.command()
def query(image: Optional[Path] = typer.Option(None, "--image", "-i", help="Find faces like this photo's."),
          text: Optional[str] = typer.Option(None, "--text", "-t", help="Find faces that fit a description."),
          k: Optional[int] = typer.Option(None, "-k", help=f"Number of hits [default: {DEFAULTS.k}].", show_default=False),
          face: Optional[int] = typer.Option(None, "--face", help="Which face of --image (0 = largest; of a video, 0 = its first track by start) [default: the largest face].", show_default=False),
          as_json: bool = typer.Option(False, "--json", help="Print a JSON array of hits."),
          sheet: Optional[Path] = typer.Option(None, "--sheet", help="Also save a contact sheet (.png/.jpg/.html)."),
          weights: Optional[str] = typer.Option(None, "--weights", "-w", help="Region weights in the score, e.g. hair=2,eyes=1,background=0 (unnamed regions keep 1)."),
          region: Optional[str] = typer.Option(None, "--region", help="Rank by one region alone: background, hair, face_skin, eyes, eyebrows, lips, nose."),
          where: Optional[str] = typer.Option(None, "--where", help="Only faces meeting a filter: \"male<0.5 and smiling>0.5\", \"30<=age<40\", \"path~'*/2019/*'\", \"date>=2019-06-01\". Alone, it browses: the faces meeting it, best fit first."),
          exclude_self: bool = typer.Option(False, "--exclude-self", help="Leave the faces of --image itself out of the hits."),
          match: str = typer.Option("default", "--match", help="With --image: person (the same person, by identity), look-alike (people who look alike, not the same person), default (the same person first, then look-alikes)."),
          person: Optional[str] = typer.Option(None, "--person", help="Only faces of this person (a name from `facesearch people`, or an id); like --where \"person = 'NAME'\"."),
          min_same_person: Optional[float] = typer.Option(None, "--min-same-person", help="With --image (person or default mode): drop hits whose same-person probability is below this (0-1; 0.95: 0.017% false accepts, 9.5% false rejects on validation identities, README \"Same person or not\")."),
          one_per_person: bool = typer.Option(False, "--one-per-person", help="With --match look-alike: one face per other person (a list of different people; fewer than K hits may come back)."),
          index: Optional[Path] = IndexOption, db_url: Optional[str] = DbOption) -> None:
    """Print the faces most like --image, fitting --text, or --image changed as --text says;
    with --where alone, the faces meeting the filter. `facesearch vocabulary` lists the words
    --text understands."""
    from facesearch.search.ranking import parse_weights

    if exclude_self and image is None:
        _fail("--exclude-self leaves out the faces of --image; there is no --image")
    if face is not None and image is None:
        _fail("--face picks a face of --image; there is no --image")
    if sheet is not None:
        _check_output(sheet, "--sheet", given=[image])
    region_weights = parse_weights(weights) if weights is not None else None
    hits = _search(index, db_url).query(image=image, text=text, k=k, face=face, region=region,
                                        weights=region_weights, where=where,
                                        exclude=[image] if exclude_self else None, match=match,
                                        person=person, min_same_person=min_same_person,
                                        one_per_person=one_per_person)
    if not hits and where is not None:
        typer.echo("no indexed face meets the --where filter", err=True)
    if as_json:
        typer.echo(json.dumps(hits.to_dicts(), indent=2))
    else:
        from facesearch.render import hits_table

        if hits.understood is not None:
            typer.echo(f"understood: {hits.understood.summary() or 'every face (no class named)'}")
            if hits.understood.not_known:
                typer.echo(f"not known to this model yet (emotions), left out: "
                           f"{', '.join(hits.understood.not_known)}")
            if hits.understood.not_understood:
                typer.echo(f"not understood, left out: {', '.join(hits.understood.not_understood)} "
                           f"(`facesearch vocabulary` lists what can be asked)")
        typer.echo(hits_table(hits))
    if sheet is not None:
        from facesearch.render import save_contact_sheet

        save_contact_sheet(sheet, hits, image=image, text=text, face=face or 0, where=where,
                           weights=region_weights, region=region)
        typer.echo(f"contact sheet: {sheet}", err=as_json)


@app.command()
def compare(first: Path = typer.Argument(..., help="A photo or a video (its faces are tracks, with their times)."),
            second: Path = typer.Argument(..., help="Another photo or video."),
            as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Say, for each pair of faces of the two photos or videos, whether they are the same person,
    with the calibrated probability."""
    from facesearch.api import FaceSearch

    pairs = FaceSearch().compare(first, second)
    if as_json:
        typer.echo(json.dumps([pair.to_dict() for pair in pairs], indent=2))
        return
    from facesearch.render import comparisons_table

    typer.echo(f"faces of {first} - faces of {second}:")  # which photo each face number is of
    typer.echo(comparisons_table(pairs))


@app.command()
def describe(image: Path = typer.Argument(..., help="A photo, or a video (its faces are tracks, with their times)."),
             out: Optional[Path] = typer.Option(None, "--out", "-o", help="Save an overlay picture: boxes, landmarks, region masks."),
             as_json: bool = typer.Option(False, "--json", help="Print JSON (with the 364-dim master and 512-dim identity vectors)."),
             parser: Optional[str] = typer.Option(None, "--parser", help="Region parser that cuts the masks: learned (our face parser) or mesh (face-mesh polygons) [default: FACESEARCH_PARSER, else learned].")) -> None:
    """Find the faces in a photo and show their attributes (and, with --out, their regions)."""
    from facesearch.api import FaceSearch, no_face_error

    if out is not None:
        _check_output(out, "--out", given=[image])
    faces = FaceSearch(settings=Settings.from_env(parser=parser)).describe(image)
    if not faces:
        _fail(str(no_face_error(image)))
    if as_json:
        typer.echo(json.dumps([face.to_dict() for face in faces], indent=2))
    else:
        from facesearch.render import faces_table

        typer.echo(faces_table(faces))
    if out is not None:
        from facesearch.render import overlay_frame_note, save_overlay

        time = save_overlay(out, image, faces)
        frame = "" if time is None else f" (video {overlay_frame_note(time, faces[0].track.track_id)})"
        typer.echo(f"overlay: {out}{frame}", err=as_json)


#: Failed files `facesearch info` lists with their reasons (--json lists every one).
INFO_FAILURES = 10


@app.command()
def info(index: Optional[Path] = IndexOption, db_url: Optional[str] = DbOption,
         as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """What is in an index: photos, faces, failures, model version, index type, size."""
    details = _search(index, db_url).info()
    if as_json:
        typer.echo(json.dumps(details, indent=2))
        return
    for key, value in details.items():
        if key == "failed":  # each with its reason, one line; the first few (--json: all)
            typer.echo(f"{'failed':>18}: {len(value)}")
            for path, error in value[:INFO_FAILURES]:
                reason = (error or path).splitlines()[0] if (error or path) else path
                typer.echo(f"{'':>20}{reason if len(reason) <= 160 else reason[:157] + '...'}")
            if len(value) > INFO_FAILURES:
                typer.echo(f"{'':>20}... and {len(value) - INFO_FAILURES} more (`facesearch info --json` lists all)")
        elif key == "spaces":
            for name, space in value.items():
                typer.echo(f"{'space ' + name:>18}: {space['vectors']} vectors of {space['dim']} dims, "
                           f"{space['index_type']}, model {space['model_version'] or '-'}")
        elif key.endswith("_bytes") and isinstance(value, int):
            typer.echo(f"{key:>18}: {value} ({value / 2**20:.1f} MiB)")
        else:
            typer.echo(f"{key:>18}: {'-' if value is None else value}")


@app.command()
def vocabulary(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List what --text understands: the classes and the words for them, ages, what is not known yet."""
    from facesearch.search.filters import FILTER_NAMES
    from facesearch.search.text import vocabulary as known

    words = known()
    if as_json:
        typer.echo(json.dumps(words, indent=2))
        return
    typer.echo("Classes (any of these words; a negation such as \"no\", \"without\" asks for the absence):")
    for name, phrases in words["classes"].items():
        absent = words["absent"].get(name)
        extra = f"   | absent: {', '.join(absent)}" if absent else ""
        typer.echo(f"  {name:>20}: {', '.join(phrases)}{extra}")
    typer.echo(f"Ages (read from the age estimate): {', '.join(words['ages'])}")
    typer.echo(f"Every face (alone, or with --where): {', '.join(words['everyone'])}")
    if words["not_yet_known"]:
        typer.echo(f"Not known to this model yet (emotions): {', '.join(words['not_yet_known'])}")
    typer.echo("Other words are matched by meaning to the ones above; --where compares "
               f"{FILTER_NAMES}.")


@app.command()
def remove(paths: list[Path] = typer.Argument(..., help="Photos to take out of the index."),
           index: Optional[Path] = IndexOption, db_url: Optional[str] = DbOption) -> None:
    """Take photos, their faces and vectors out of the index for good (a path not in the index
    is an error, and then nothing is removed)."""
    from facesearch.errors import counted

    removed = _search(index, db_url).remove(paths, missing_ok=False)
    typer.echo(f"removed {counted(removed, 'photo')}")


@app.command()
def serve(index: Optional[Path] = IndexOption, db_url: Optional[str] = DbOption,
          host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on; any but loopback needs a token."),
          port: int = typer.Option(8000, "--port", help="TCP port."),
          token: Optional[str] = typer.Option(None, "--token", help="Token every request must carry [default: none on loopback, else one generated and printed].")) -> None:
    """Serve the search page and its JSON API (docs at /docs) over an index, until Ctrl-C."""
    from facesearch.server import serve as run_server

    settings = Settings.from_env(index_dir=index, db_url=db_url)
    if not 0 < port < 65536:
        _fail(f"--port {port} is not a TCP port (1-65535)")
    run_server(settings, host=host, port=port, token=token, echo=typer.echo)


@app.command()
def train(run_dir: Path = typer.Option(Path("runs/default"), help="Checkpoints, settings and metrics."),
          epochs: Optional[int] = typer.Option(None, help="Passes over the training faces [default: 30, the shipped recipe]."),
          seed: int = typer.Option(0, help="Random seed."),
          data: Optional[Path] = typer.Option(None, help="Data folder [default: ../shared/data or $FACESEARCH_DATA]."),
          limit: Optional[int] = typer.Option(None, help="Use only the first N photos of each source."),
          weights: Optional[Path] = typer.Option(None, help="Where to write the weights [default: descriptor.safetensors in RUN_DIR]."),
          export: bool = typer.Option(False, "--export", help="Also replace the package's shipped weights with this run's (models/weights/descriptor.safetensors)."),
          device: str = typer.Option("cpu", help="torch device (cpu, cuda)."),
          init_weights: Optional[Path] = typer.Option(None, help="Fine-tune these weights instead of starting from ImageNet."),
          teacher: Optional[str] = typer.Option(None, help="Distil a stronger descriptor: dlib (needs facesearch[anchors])."),
          assignments: list[str] = typer.Option([], "--set", help="Any other training setting, NAME=VALUE (e.g. lr=5e-4); see settings.json of a run."),
          watch: bool = typer.Option(False, help="Print validation figures after every epoch.")) -> None:
    """Train the descriptor network on CelebA + UTKFace, measure it, write the weights into RUN_DIR (the shipped ones only with --export)."""
    from facesearch.training.train import TrainSettings, override, train_and_export

    if init_weights is not None and not init_weights.is_file():
        raise FaceSearchError(f"no weights file at {init_weights}")
    settings = override(TrainSettings(seed=seed, limit=limit, device=device, teacher=teacher,
                                      init_weights=str(init_weights) if init_weights else None),
                        assignments)
    if epochs is not None:
        settings.epochs = epochs
    metrics = train_and_export(run_dir, settings, data, weights, validate_each_epoch=watch, export=export)
    typer.echo(json.dumps({k: v for k, v in metrics["validation"].items() if k != "attributes"}, indent=2))


@app.command(name="eval")
def evaluate(dlib: bool = typer.Option(True, help="Measure dlib's descriptor on the same faces (if installed)."),
             cache: Path = typer.Option(Path("cache"), help="Preprocessed training data (made if missing)."),
             data: Optional[Path] = typer.Option(None, help="Data folder [default: ../shared/data or $FACESEARCH_DATA]."),
             as_json: bool = typer.Option(False, "--json", help="Print JSON (per-attribute accuracies included)."),
             match_modes: bool = typer.Option(True, "--match-modes/--no-match-modes", help="Also measure the match modes (identity space) and the grouping into people on the CelebA validation identities, end to end (photos described once, cached).")) -> None:
    """Measure the shipped model on the validation identities, beside dlib's descriptor."""
    from facesearch.training.evaluate import evaluate_shipped_model, format_table

    ours, anchor = evaluate_shipped_model(dlib, cache, data)
    modes = people = None
    if match_modes:
        from facesearch.training.identity_calibration import figures, format_modes
        from facesearch.training.people_eval import format_people
        from facesearch.training.people_eval import measure as measure_people

        modes = figures(cache, root=data)
        people = measure_people(cache, root=data)
    if as_json:
        typer.echo(json.dumps({"facesearch": ours, "dlib": anchor, "match_modes": modes,
                               "people": people}, indent=2))
    else:
        typer.echo(format_table(ours, anchor))
        if modes is not None:
            typer.echo("")
            typer.echo(format_modes(modes))
        if people is not None:
            typer.echo(format_people(people))


@app.command(name="eval-text")
def evaluate_text(steps: bool = typer.Option(True, help="Also measure each step's effect."),
                  limit: Optional[int] = typer.Option(None, help="At most N gallery faces (a quick check)."),
                  as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Measure text search: P@10 and AP@100 of a query set, caption recall, on validation faces."""
    from facesearch.training.text_eval import evaluate as evaluate_text_search, format_report

    report = evaluate_text_search(steps=steps, limit=limit)
    typer.echo(json.dumps(report, indent=2) if as_json else format_report(report))


people_app = typer.Typer(help="People: the faces of the index grouped by person (found by `facesearch index`). "
                              "Without a command: list them.", no_args_is_help=False,
                         invoke_without_command=True)
app.add_typer(people_app, name="people")


@people_app.callback()
def people(ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="Print JSON (every face of every person)."),
           index: Optional[Path] = IndexOption, db_url: Optional[str] = DbOption) -> None:
    """List the people: id, name, number of faces, a cover face (the best detected)."""
    ctx.obj = (index, db_url)
    if ctx.invoked_subcommand is not None:
        return
    found = _search(index, db_url).people()
    if as_json:
        typer.echo(json.dumps(found, indent=2))
        return
    if not found:
        typer.echo("no people yet: `facesearch index` groups faces into people (a person needs "
                   f"{Settings.from_env().people_min_faces} similar faces)")
        return
    typer.echo(f"{'id':>5}  {'name':<20} {'faces':>5}  cover face")
    for person in found:
        cover = person["faces"][0] if person["faces"] else None
        cover_text = f"{cover['path']} (face {cover['face_id']})" if cover else "-"
        typer.echo(f"{person['id']:>5}  {person['name'] or '-':<20} {len(person['faces']):>5}  {cover_text}")


def _people_index(ctx: typer.Context, index: Optional[Path], db_url: Optional[str]):
    """The index of a `people` subcommand: its own --index / --db-url, else those given to
    `people`."""
    return _search(index or ctx.obj[0], db_url or ctx.obj[1])


@people_app.command(name="name")
def people_name(ctx: typer.Context, person_id: str = typer.Argument(..., help="The person's id, or its present name."),
                name: str = typer.Argument(..., help="The name to give."),
                index: Optional[Path] = IndexOption, db_url: Optional[str] = DbOption) -> None:
    """Name a person (kept across index runs)."""
    found = _people_index(ctx, index, db_url).name_person(person_id, name)
    typer.echo(f"person {found} is {name!r}")


@people_app.command(name="merge")
def people_merge(ctx: typer.Context, keep: str = typer.Argument(..., help="The person that stays (keeps its id and name): id or name."),
                 other: str = typer.Argument(..., help="The person whose faces move to KEEP: id or name."),
                 index: Optional[Path] = IndexOption, db_url: Optional[str] = DbOption) -> None:
    """Merge person OTHER into person KEEP."""
    _people_index(ctx, index, db_url).merge_people(keep, other)
    typer.echo(f"person {other} merged into person {keep}")


@people_app.command(name="remove-face")
def people_remove_face(ctx: typer.Context, face_id: int = typer.Argument(..., help="A face id (`face_id` of a hit or of `people --json`)."),
                       index: Optional[Path] = IndexOption, db_url: Optional[str] = DbOption) -> None:
    """Take a face out of its person, for good (it is never put back automatically)."""
    person_id = _people_index(ctx, index, db_url).remove_face(face_id)
    typer.echo(f"face {face_id} taken out of person {person_id}")


def _database_problem(error: Exception) -> str | None:
    """One line for an error of the SQL database (a damaged file, a URL that names no usable
    database), without the row data SQLite's messages quote; None for other errors."""
    exc = sys.modules.get("sqlalchemy.exc")
    if exc is None:
        return None
    if isinstance(error, (exc.ArgumentError, exc.NoSuchModuleError)):
        return (f"the database URL cannot be used ({type(error).__name__}): check --db-url or "
                "FACESEARCH_DB_URL (e.g. postgresql://user@host/name)")
    if isinstance(error, exc.DatabaseError):
        cause = type(getattr(error, "orig", None) or error).__name__
        return (f"the index's database could not be read ({cause}); it may be damaged: run "
                "`facesearch check`, then `facesearch check --repair`")
    return None


def _debug() -> bool:
    """FACESEARCH_DEBUG: tracebacks instead of one-line errors."""
    try:
        return Settings.from_env().debug
    except FaceSearchError:
        return False


def _usage_problem(error: Exception) -> str | None:
    """One line for a command-line mistake (click's or typer's own click's exceptions): an
    unknown flag with "did you mean", a missing value, an unknown command; None otherwise."""
    if not (hasattr(error, "format_message") and hasattr(error, "exit_code")):
        return None
    if hasattr(error, "possibilities") and getattr(error, "option_name", None):
        possible = sorted(error.possibilities or [])
        hint = f" (did you mean {' or '.join(possible)}?)" if possible else ""
        command = getattr(getattr(error, "ctx", None), "command_path", "facesearch")
        return f"no such option {error.option_name}{hint}; see `{command} --help`"
    return error.format_message().strip().splitlines()[0]


def _one_line_warnings() -> None:
    """Show a SettingWarning (a misspelt FACESEARCH_ variable) as one `warning:` line."""
    shown = warnings.showwarning

    def show(message, category, *args, **kwargs) -> None:
        if issubclass(category, SettingWarning):
            typer.echo(f"warning: {message}", err=True)
        else:
            shown(message, category, *args, **kwargs)
    warnings.showwarning = show


def main() -> None:
    """Entry point: one clear line and a non-zero exit for every failure, never a traceback."""
    _one_line_warnings()
    try:
        code = app(standalone_mode=False)
        sys.exit(code if isinstance(code, int) else 0)
    except FaceSearchError as error:
        typer.echo(f"error: {as_flags(str(error))}", err=True)
        sys.exit(1)
    except typer.Exit as done:
        sys.exit(done.exit_code)
    except (KeyboardInterrupt, click.exceptions.Abort):
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as error:  # noqa: BLE001 - the promise is: never a traceback
        usage = _usage_problem(error)
        if usage is not None:
            typer.echo(f"error: {usage}", err=True)
            sys.exit(2)
        database = _database_problem(error)
        if database is not None and not _debug():
            typer.echo(f"error: {database}", err=True)
            sys.exit(1)
        if _debug():
            raise
        message = str(error).strip().splitlines()
        typer.echo(f"error: {type(error).__name__}: {message[0] if message else ''} "
                   "(set FACESEARCH_DEBUG=1 for details)", err=True)
        sys.exit(2)
