"""Everything the ledger measures on CUDA, in one command, on a machine with a CUDA GPU:

    nnUNetv2_morse_gpu_evidence     # from a checkout (pip install -e '.[test]'); then nnUNetv2_morse_results,
                                    # and commit results/, RESULTS.md and README.md together

  1. tests/test_cuda.py (compiled, fp16 and bf16: every trainer of the family in 2D, the Table 1 trainers in
     3D): JUnit XML and a summary into results/cost/cuda_tests/;
  2. every benchmark study of the ledger whose device is cuda (results/cost/cuda_*: fp16, bf16, torch.compile on
     and off; 3d_fullres, 2d, ResEnc), each through nnUNetv2_morse_study, finished ones skipped.

Refuses with one line where CUDA is absent (--dry-run prints the plan anyway).
"""
from __future__ import annotations

import os
import sys
import xml.etree.ElementTree as ElementTree
from typing import List, Optional, Sequence, Tuple

from nnunetv2_morse.cli import command_parser, console_script, fail, one_line_errors, relative_to_here

PROG = "nnUNetv2_morse_gpu_evidence"
CUDA_TESTS_FOLDER = os.path.join("cost", "cuda_tests")
CUDA_TESTS_SUMMARY = "summary.json"
JUNIT_FILE = "junit.xml"
REPOSITORY = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_RESULTS = os.path.join(REPOSITORY, "results")


def cuda_test_command(repository: str, junit_file: str) -> List[str]:
    """pytest on tests/test_cuda.py with this process's interpreter (the one that has torch and this package)."""
    return [sys.executable, "-m", "pytest", os.path.join(repository, "tests", "test_cuda.py"), "-v", "-rs",
            f"--junitxml={junit_file}"]


def cuda_studies(results_folder: str) -> List[str]:
    """The benchmark studies of the ledger that run on cuda."""
    from nnunetv2_morse.ledger.definition import BenchmarkStudy, find_studies, load_study
    return [folder for folder in find_studies(results_folder)
            if isinstance(study := load_study(folder), BenchmarkStudy) and study.device == "cuda"]


def junit_counts(junit_file: str) -> dict:
    """passed, failed, errors, skipped (and tests) summed over the JUnit XML's test suites."""
    root = ElementTree.parse(junit_file).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    counts = {key: sum(int(s.get(key, 0)) for s in suites) for key in ("tests", "failures", "errors", "skipped")}
    return {"passed": counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"],
            "failed": counts["failures"], "errors": counts["errors"], "skipped": counts["skipped"],
            "tests": counts["tests"]}


def plan(results_folder: str, repository: str) -> Tuple[List[str], List[str]]:
    """The test command and the CUDA benchmark study folders, in the order they run."""
    junit = os.path.join(results_folder, CUDA_TESTS_FOLDER, JUNIT_FILE)
    return cuda_test_command(repository, junit), cuda_studies(results_folder)


def run_tests(command: List[str], results_folder: str) -> bool:
    """Runs the CUDA tests and writes their summary; True if none failed."""
    from nnunetv2_morse.ledger import records
    from nnunetv2_morse.ledger.run import CommandFailed, CommandRunner

    folder = os.path.join(results_folder, CUDA_TESTS_FOLDER)
    os.makedirs(folder, exist_ok=True)
    try:
        record = CommandRunner({})(command)
    except CommandFailed as failure:
        record = failure.record
    junit = os.path.join(folder, JUNIT_FILE)
    if not os.path.isfile(junit):
        raise RuntimeError(f"pytest wrote no {junit} (exit code {record['returncode']})")
    counts = junit_counts(junit)
    records.write_json({**counts, "command": record["command"], "returncode": record["returncode"],
                        "seconds": record["seconds"], "junit": JUNIT_FILE, "recorded": records.now(),
                        **records.environment_record()}, os.path.join(folder, CUDA_TESTS_SUMMARY))
    print(f"tests/test_cuda.py: {counts['passed']} passed, {counts['failed']} failed, {counts['errors']} errors, "
          f"{counts['skipped']} skipped", flush=True)
    return counts["failed"] == 0 and counts["errors"] == 0


@console_script
def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = command_parser(PROG, __doc__)
    parser.add_argument("-i", dest="results", metavar="FOLDER", default=DEFAULT_RESULTS,
                        help="the ledger folder (default: the checkout's results/)")
    parser.add_argument("--skip-tests", action="store_true", help="run the CUDA benchmark studies only")
    parser.add_argument("--dry-run", action="store_true", help="print what would run and stop (also without CUDA)")
    args = parser.parse_args(argv)
    import torch

    from nnunetv2_morse.ledger.definition import StudyError
    from nnunetv2_morse.ledger.run import run_study_folder

    checkout = ("this command needs the repository's tests/ and results/: run it from a checkout installed with "
                "pip install -e '<checkout>[test]'")
    if not os.path.isdir(args.results):
        fail(PROG, f"-i {args.results}: no such folder{relative_to_here(args.results)}"
             + (f"; {checkout}" if args.results == DEFAULT_RESULTS else ""))
    test_command, studies = plan(args.results, REPOSITORY)
    if not args.skip_tests and not os.path.isfile(test_command[3]):
        fail(PROG, f"{test_command[3]} not found; {checkout}")
    cuda = torch.cuda.is_available()
    if not cuda and not args.dry_run:
        fail(PROG, "no CUDA GPU here (torch.cuda.is_available() is False): run it on a machine with one")
    where = torch.cuda.get_device_name(0) if cuda else "a CUDA GPU (none here: --dry-run only)"
    print(f"CUDA evidence on {where}:\n" + ("" if args.skip_tests else f"  {' '.join(test_command)}\n")
          + "".join(f"  nnUNetv2_morse_study {folder}\n" for folder in studies), flush=True)
    if args.dry_run:
        return
    tests_passed = args.skip_tests or run_tests(test_command, args.results)
    with one_line_errors(PROG, (StudyError,)):
        for folder in studies:
            run_study_folder(folder)
    if not tests_passed:
        fail(PROG, "tests/test_cuda.py had failures (see its JUnit XML); the benchmark "
                 "tables were written")
    print("Done: run nnUNetv2_morse_results, then commit results/, RESULTS.md and README.md together")


if __name__ == "__main__":
    main()
