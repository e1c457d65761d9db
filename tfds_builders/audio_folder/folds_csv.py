"""Reading and checking `folds.csv`, the folds a user gives an audio folder's files."""

import csv
import io

from tfds_builders.audio_io import AudioDataError, one_line

FOLDS_CSV = "folds.csv"


def read_folds_csv(csv_path, root, audio_paths, num_folds):
    """{relative path: fold} from folds.csv, which must list each audio file once.

    Args:
      csv_path: the folds.csv file, UTF-8 with columns `filename,fold` (others ignored);
        a file name that is not UTF-8 is given as the bytes of the name.
      root: the audio folder, for messages.
      audio_paths: the relative paths of the folder's audio files, sorted.
      num_folds: folds are 1..num_folds, each given a file.

    Raises:
      AudioDataError: the file lacks a column, lists a file twice,
        lists one that is not an audio file of the folder or leaves one out, or
        has a fold that is not a whole number in 1..num_folds, or an empty fold.
    """
    fix = (
        f"list every audio file once as filename,fold with the filename relative to {root} "
        f"(e.g. dog/a.wav,2) and folds 1..{num_folds}"
    )
    try:
        # UTF-8; a file name that is not (bytes such as \xff) is read as the file system
        # gives it to Python (`os.fsdecode`), so that it names the same file.
        text = csv_path.read_text(encoding="utf-8-sig", errors="surrogateescape")
    except OSError as err:  # Permission denied, most likely.
        raise AudioDataError(
            f"cannot read {csv_path}: {(err.strerror or one_line(err)).lower()}; make it "
            "readable (chmod u+r), or remove it to have the folds dealt"
        ) from err
    reader = csv.DictReader(io.StringIO(text))
    fields = [name.strip() for name in reader.fieldnames or ()]
    missing = [c for c in ("filename", "fold") if c not in fields]
    if missing:
        raise AudioDataError(
            f"{csv_path} lacks the column(s) {', '.join(missing)} in its header line; {fix}"
        )
    reader.fieldnames = fields
    known = set(audio_paths)
    folds, first_line = {}, {}
    for row in reader:
        line = reader.line_num
        filename = (row["filename"] or "").strip().replace("\\", "/").removeprefix("./")
        fold_text = (row["fold"] or "").strip()
        if not filename and not fold_text:
            continue
        if filename in first_line:
            raise AudioDataError(
                f"{csv_path} line {line}: {filename} is listed again (first on line "
                f"{first_line[filename]}); {fix}"
            )
        if filename not in known:
            raise AudioDataError(
                f"{csv_path} line {line}: {filename!r} is not an audio file in {root} "
                f"(hidden and non-audio files are ignored); {fix}"
            )
        try:
            fold = int(fold_text)
        except ValueError:
            raise AudioDataError(
                f"{csv_path} line {line}: fold {fold_text!r} is not a whole number; {fix}"
            ) from None
        if not 1 <= fold <= num_folds:
            hint = f" or pass num_folds={fold}" if fold > num_folds else ""
            raise AudioDataError(
                f"{csv_path} line {line}: fold {fold} is outside 1..{num_folds}; renumber "
                f"it{hint}"
            )
        folds[filename] = fold
        first_line[filename] = line
    unlisted = [path for path in audio_paths if path not in folds]
    if unlisted:
        raise AudioDataError(
            f"{csv_path} does not list {len(unlisted)} audio file(s), first {unlisted[0]}; {fix}"
        )
    unused = sorted(set(range(1, num_folds + 1)) - set(folds.values()))
    if unused:
        raise AudioDataError(
            f"{csv_path} puts no file in fold {unused[0]} of 1..{num_folds}; give every fold "
            "files, or renumber the folds 1..N and pass num_folds=N"
        )
    return folds
