"""The README's verdict: the headline comparisons and cost ratios, rendered from the ledger between two marker lines
of the README (BEGIN, END) by ``nnUNetv2_morse_results``, and its ``--check`` that RESULTS.md and that block are
what the ledger renders today.

A headline is a training study's comparison or a benchmark study marked ``"verdict": true`` in its study.json.
Quality, per headline comparison and model, for the per-case foreground mean of each metric: model - baseline with
its bootstrap interval and BH-corrected p (the Paired rows of RESULTS.md, computed once for both) and one word
(``verdict_word``); and, for each such model that the study also scores with its head off, head on - head off
(study 2's question: what the head adds at inference). Cost, per headline benchmark study: the ratios of
nnUNetTrainerMORSE (and _paper) to nnUNetTrainer, as a range over the plans measured. Above them, in short: one line
per comparison with its metrics grouped by word, and one per device with nnUNetTrainerMORSE's cost over every
headline benchmark study on it ("not yet measured" where none has run).
"""
from __future__ import annotations

import os
import re
from typing import List, Optional, Sequence, Tuple

import numpy as np

from nnunetv2_morse.evaluation.statistics import CONFIDENCE_LEVEL, ranks_oppose
from nnunetv2_morse.ledger.definition import BenchmarkStudy, Comparison, StudyError, TrainingStudy
from nnunetv2_morse.ledger.records import read_text, write_text
from nnunetv2_morse.ledger.render import (FOREGROUND_MEAN, HIGHER_IS_BETTER, LEVELLED_OFF, LEVELLING_SHARE, METRICS,
                                          ComparisonRefused, Paired, RecordedBenchmark, RenderedLedger, Row,
                                          StudyRenderer, _difference, detection_failures,
                                          _list, _metric_label, _number, _p, has_not_levelled_off, paired_count_text,
                                          render_ledger)

BEGIN = "<!-- verdict: rendered by nnUNetv2_morse_results from the ledger (results/); do not edit -->"
END = "<!-- end of verdict -->"
SIGNIFICANCE = 0.05
MIXED = "mixed: the mean and the signed ranks point opposite ways"
RANKS_ONLY = "{} by the signed ranks only: {}"
COST_BASELINE = "nnUNetTrainer"
COST_TRAINERS = ("nnUNetTrainerMORSE", "nnUNetTrainerMORSE_paper")
COST_RATIOS = (("step_s", "step"), ("peak_memory_mb", "peak memory"), ("inference_s", "inference"))
# a metric, its foreground mean's row, its noise floor (noise_floor) and its word
MetricWord = Tuple[str, Row, Optional[Tuple[float, Paired]], str]


def noise_floor(noises: Sequence[Optional[Paired]], metric: str) -> Optional[Tuple[float, Paired]]:
    """The larger |mean seed-to-seed difference| of the foreground mean over the trainers with a second seed
    finished (RESULTS.md's noise columns), and the seed-to-seed comparison it comes from; None if neither has one."""
    means = [(abs(n.row(FOREGROUND_MEAN, metric).difference.mean), n) for n in noises if n is not None]
    means = [(m, n) for m, n in means if np.isfinite(m)]
    return max(means, key=lambda pair: pair[0]) if means else None


def floor_text(metric: str, floor: Optional[Tuple[float, Paired]], paired: Paired) -> str:
    """', noise floor X', naming the folds and cases it comes from where they are not the comparison's own ('only'
    where they are some of them)."""
    if floor is None:
        return ""
    value, source = floor
    fewer = " only" if set(source.folds) < set(paired.folds) else ""
    origin = ("" if source.folds == paired.folds else
              f" (from fold{'s' if len(source.folds) > 1 else ''} {_list(source.folds)}{fewer}, "
              f"{paired_count_text(source, 'cases')})")
    return f", noise floor {_number(metric, value)}{origin}"


def significance_word(metric: str, row: Row) -> str:
    """With p (BH) < SIGNIFICANCE: MIXED where the signed ranks point against the interval (where it excludes 0)
    or else against the mean (a few large differences against many small ones); else 'better' or 'worse' (the
    model, by HIGHER_IS_BETTER) where the interval excludes 0, RANKS_ONLY where it does not. 'no significant
    difference' otherwise."""
    d = row.difference
    if d.count == 0:
        return "no case scored on both sides"
    if not (row.p_adjusted < SIGNIFICANCE and d.rank_sign != 0):
        return "no significant difference"
    excludes_zero = d.low > 0 or d.high < 0
    side = d.low if excludes_zero else d.mean
    if side != 0 and ranks_oppose(side, d.rank_sign):
        return MIXED
    word = "better" if (d.rank_sign > 0) == HIGHER_IS_BETTER[metric] else "worse"
    if excludes_zero:
        return word
    interval = np.isfinite(d.low) and np.isfinite(d.high)
    return RANKS_ONLY.format(word, "the mean's interval includes 0" if interval else "the mean has no interval")


def verdict_word(metric: str, row: Row, floor: Optional[float]) -> str:
    """significance_word, except that a 'better' or 'worse' (by the signed ranks only, too) with |difference| <=
    floor is 'within the seed-to-seed noise'; without a floor (no second seed finished) such a word says so."""
    word = significance_word(metric, row)
    if word.split(" ", 1)[0] not in ("better", "worse"):
        return word
    if floor is None:
        return f"{word}, noise floor not yet measured"
    return "within the seed-to-seed noise" if abs(row.difference.mean) <= floor else word


def metric_words(paired: Paired, noises: Optional[Sequence[Optional[Paired]]]) -> List[MetricWord]:
    """Per metric (METRICS), the foreground mean's row, noise floor and word: verdict_word against the noise floor of
    noises (the two trainers' seed-to-seed comparisons), or significance_word alone when noises is None (no
    seed-to-seed noise applies: the same models on both sides)."""
    words = []
    for metric in METRICS:
        row = paired.row(FOREGROUND_MEAN, metric)
        floor = None if noises is None else noise_floor(noises, metric)
        word = (significance_word(metric, row) if noises is None
                else verdict_word(metric, row, None if floor is None else floor[0]))
        words.append((metric, row, floor, word))
    return words


def metric_lines(paired: Paired, words: Sequence[MetricWord]) -> List[str]:
    """Per metric of words (metric_words), the foreground mean's difference, interval, p (BH), noise floor and
    word."""
    return [f"  - {_metric_label(metric)}: {_difference(metric, row.difference)}, p (BH) "
            f"{_p(row.p_adjusted)}{floor_text(metric, floor, paired)}: **{word}**"
            for metric, row, floor, word in words]


def _and(names: Sequence[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def words_in_short(words: Sequence[MetricWord]) -> str:
    """The metrics grouped by word, in METRICS order: 'worse in Dice and NSD; no significant difference in HD95 and
    ASSD'; a word's qualifier (after its first ': ' or ', ') goes in parentheses after the metrics."""
    groups = {}
    for metric, _, _, word in words:
        groups.setdefault(word, []).append(metric)
    parts = []
    for word, metrics in groups.items():
        base, *qualifier = re.split(r": |, ", word, maxsplit=1)
        parts.append(f"{base} in {_and(metrics)}" + "".join(f" ({q})" for q in qualifier))
    return "; ".join(parts)


def quality_lines(renderer: StudyRenderer, comparison: Comparison, model: str, link: str) -> Tuple[List[str], str]:
    """One list item: how much of the comparison has run and which of its two trainers has not levelled off
    (has_not_levelled_off), then per metric the foreground mean's difference, interval, p (BH), noise floor and
    word; and its line in short (in_short)."""
    study, baseline = renderer.study, comparison.baseline
    head, short = f"- {link}, {model} − {baseline}", f"- {model} − {baseline} (`{study.name}`)"
    not_run = next((t for t in (baseline, model) if renderer.arm(t, study.seed) is None), None)
    if not_run:
        return [f"{head}: not yet run (no finished fold of {not_run} at seed {study.seed})."], f"{short}: not yet run."
    try:
        paired = renderer.paired(baseline, model)
        noises = (renderer.noise(baseline), renderer.noise(model))
    except ComparisonRefused as refusal:
        return [f"{head}: not compared: {refusal}."], f"{short}: not compared."
    if not paired.folds:
        return [f"{head}: not yet run (no fold finished by both)."], f"{short}: not yet run."
    changes = {trainer: renderer.ema_change(trainer, study.seed, paired.folds) for trainer in (baseline, model)}
    unlevelled = [(trainer, change) for trainer, change in changes.items() if has_not_levelled_off(change)]
    words = metric_words(paired, noises)
    return ([f"{head}: {_cases_paired(paired, study)}"
             + "".join(f"; {trainer} has not levelled off (EMA {change:+.4f} over the last {LEVELLING_SHARE:.0%} of "
                       "epochs)" for trainer, change in unlevelled) + ":"] + metric_lines(paired, words),
            in_short(short, paired, study, words, [trainer for trainer, _ in unlevelled]))


def in_short(head: str, paired: Paired, study: TrainingStudy, words: Sequence[MetricWord],
             unlevelled: Sequence[str] = ()) -> str:
    """'<head>: <words_in_short>; preliminary, 3 of 5 folds; <trainer> has not levelled off.'"""
    notes = ([f"preliminary, {len(paired.folds)} of {len(study.folds)} folds"] if _preliminary(paired, study) else []
             ) + [f"{t} has not levelled off" for t in unlevelled]
    return f"{head}: " + "; ".join([words_in_short(words)] + notes) + "."


def _preliminary(paired: Paired, study: TrainingStudy) -> bool:
    """Whether the comparison pairs fewer folds than the study has."""
    return len(paired.folds) != len(study.folds)


def _cases_paired(paired: Paired, study: TrainingStudy) -> str:
    """'3 of 5 folds finished (**preliminary**), 90 paired cases in 15 slabs (<detection_failures>)'."""
    preliminary = " (**preliminary**)" if _preliminary(paired, study) else ""
    failures = detection_failures(paired)
    return (f"{len(paired.folds)} of {len(study.folds)} folds finished{preliminary}, "
            f"{paired_count_text(paired, 'paired cases')}"
            + (f" ({failures})" if failures else ""))


def head_lines(renderer: StudyRenderer, model: str, link: str) -> Tuple[List[str], str]:
    """One list item: the model with its head on against the same models with it off (RESULTS.md's head-off
    section), per metric the foreground mean's difference, interval, p (BH) and significance; and its line in
    short (in_short)."""
    head = f"- {link}, {model} head on − head off"
    short = f"- {model} head on − head off (`{renderer.study.name}`)"
    try:
        paired = renderer.head_on_off(model)
    except ComparisonRefused as refusal:
        return [f"{head}: not compared: {refusal}."], f"{short}: not compared."
    if paired is None:
        return ([f"{head}: not yet run (no finished fold of {model} at seed {renderer.study.seed})."],
                f"{short}: not yet run.")
    words = metric_words(paired, None)
    return ([f"{head}: {_cases_paired(paired, renderer.study)}:"] + metric_lines(paired, words),
            in_short(short, paired, renderer.study, words))


def largest_spreads(plans: List[dict], trainer: str) -> Optional[Tuple[float, float]]:
    """(step, inference): the trainer's own row_spreads, the largest over the plans (each {trainer: row}); None
    where a plan ran one round only or there is no plan."""
    from nnunetv2_morse.benchmark import row_spreads

    spreads = [row_spreads(rows[trainer]) for rows in plans]
    if not spreads or None in spreads:
        return None
    return max(step for step, _ in spreads), max(inference for _, inference in spreads)


def compared_plans(recorded: RecordedBenchmark) -> List[dict]:
    """Each plan of a benchmark study's recorded reports that has COST_BASELINE, as {trainer: row}."""
    plans = [{row["trainer"]: row for row in rows} for report in recorded[1].values()
             for rows in report["plans"].values()]
    return [rows for rows in plans if COST_BASELINE in rows]


def cost_ranges(plans: List[dict], trainer: str) -> List[str]:
    """The trainer's ratio_range to COST_BASELINE for each of COST_RATIOS over the plans' rounds (row_ratios)."""
    from nnunetv2_morse.benchmark import ratio_range, row_ratios

    return [ratio_range([x for rows in plans for x in row_ratios(rows[trainer], rows[COST_BASELINE], key)])
            for key, _ in COST_RATIOS]


def cost_line(recorded: Optional[RecordedBenchmark], link: str) -> str:
    """One list item: each of COST_TRAINERS' ratios to COST_BASELINE in a benchmark study's recorded reports
    (recorded: render.recorded_benchmark; None: not yet measured), the range over its plans and rounds (cost_ranges),
    each with how much that trainer's own times varied between its rounds (largest_spreads), and COST_BASELINE's:
    the scale against which the range is read."""
    from nnunetv2_morse.benchmark import caveats_with_remedy, memory_caveat, order_caveat

    if recorded is None:
        return f"- {link}: not yet measured."
    plans = compared_plans(recorded)
    if not plans:
        return f"- {link}: not compared: no {COST_BASELINE} in its tables."
    parts = []
    for trainer in COST_TRAINERS:
        measured = [rows for rows in plans if trainer in rows]
        if measured:
            spreads = largest_spreads(measured, trainer)
            parts.append(f"{trainer} " + ", ".join(f"{name} {r}" for (_, name), r in
                                                   zip(COST_RATIOS, cost_ranges(measured, trainer)))
                         + (f" over {len(measured)} plans" if len(measured) > 1 else "")
                         + (f" (its own step varied by up to {spreads[0]:.3f}x between identical rounds, its "
                            f"inference by up to {spreads[1]:.3f}x)" if spreads else ""))
    spreads = largest_spreads(plans, COST_BASELINE)
    if parts and spreads:
        parts.append(f"between identical rounds, {COST_BASELINE}'s own step varied by up to {spreads[0]:.3f}x "
                     f"and its inference by up to {spreads[1]:.3f}x")
    every_row = [row for rows in plans for row in rows.values()]
    caveat = caveats_with_remedy(order_caveat(every_row), memory_caveat(every_row))
    return (f"- {link}: " + ("; ".join(parts) if parts else f"no {' or '.join(COST_TRAINERS)} in its tables")
            + (f" (careful: {caveat})" if caveat and parts else "") + ".")


DEVICE_WORDS = {"cpu": "the CPU", "cuda": "a CUDA GPU"}


def clear_excesses(plans: List[dict], trainer: str) -> List[str]:
    """'step time over the 1.05x budget in every round at the 128x128 patch (1.142-1.236x)' for each of the
    trainer's ratios to COST_BASELINE that is a clear_excess in a plan (judged_ratios, as the
    benchmark's budget lines judge them), once per text."""
    from nnunetv2_morse.benchmark import clear_excess, judged_ratios, ratio_range

    found = []
    for rows in plans:
        patch = "x".join(str(n) for n in rows[trainer]["patch_size"])
        for row, _, name, budget, ratios in judged_ratios(list(rows.values()), rows[COST_BASELINE]):
            if row is rows[trainer] and clear_excess(ratios, budget):
                found.append(f"{name} over the {budget}x budget in every round at the {patch} patch "
                             f"({ratio_range(ratios)})")
    return list(dict.fromkeys(found))


def cost_in_short(benchmarks: Sequence[Tuple[BenchmarkStudy, Optional[RecordedBenchmark]]]) -> List[str]:
    """One line in short per device of the headline benchmark studies: COST_TRAINERS[0]'s cost_ranges over every
    plan of theirs that measured it beside COST_BASELINE, in how many of the studies, the largest spreads of the
    two trainers' own step and inference times between identical rounds (where every plan ran several rounds), its
    clear_excesses, and a pointer to the caveats cost_line gives; 'not yet measured' for a device none of whose
    studies has run, 'not compared' where none that ran measured it beside COST_BASELINE."""
    from nnunetv2_morse.benchmark import memory_caveat, order_caveat

    default = COST_TRAINERS[0]
    lines = []
    for device in dict.fromkeys(study.device for study, _ in benchmarks):
        recorded = [r for study, r in benchmarks if study.device == device]
        measured = [plans for plans in ([rows for rows in compared_plans(r) if default in rows]
                                        for r in recorded if r is not None) if plans]
        head = f"- {default}'s cost on {DEVICE_WORDS[device]}, as a ratio to {COST_BASELINE}'s"
        unrun, without = sum(r is None for r in recorded), sum(r is not None for r in recorded) - len(measured)
        if not measured:
            lines.append(f"{head}: " + ("not yet measured." if not without else
                                         f"not compared: no {default} beside {COST_BASELINE} in its benchmarks."))
            continue
        plans = [rows for study_plans in measured for rows in study_plans]
        spreads = [largest_spreads(plans, trainer) for trainer in (default, COST_BASELINE)]
        left_out = [f"{count} more {text}" for count, text in
                    ((unrun, "not yet measured"), (without, f"without {default} beside {COST_BASELINE}")) if count]
        every_row = [row for rows in plans for row in rows.values()]
        ranges = ", ".join(f"{name} {r}" for (_, name), r in zip(COST_RATIOS, cost_ranges(plans, default)))
        excesses = clear_excesses(plans, default)
        lines.append(
            f"{head}: {ranges} over {len(plans)} plan{'s' if len(plans) > 1 else ''} in {len(measured)} "
            f"benchmark{'s' if len(measured) > 1 else ''}" + (f" ({', '.join(left_out)})" if left_out else "")
            + (f"; the two trainers' own step times varied by up to {max(s[0] for s in spreads):.3f}x between "
               f"identical rounds, their inference times by up to {max(s[1] for s in spreads):.3f}x"
               if None not in spreads else "")
            + (f"; {'; '.join(excesses)}" if excesses else "")
            + ("; careful: see the benchmarks below" if order_caveat(every_row) or memory_caveat(every_row) else "")
            + ".")
    return lines


def heading_anchors(markdown: str) -> List[Tuple[str, str]]:
    """(heading line, its anchor as GitHub makes it) for every heading, in order; a repeated anchor gets -1, -2, ..."""
    found, seen = [], {}
    for line in markdown.splitlines():
        match = re.match(r"#{1,6} (.*)", line)
        if match:
            slug = re.sub(r"[^\w\- ]", "", match.group(1).strip().lower()).replace(" ", "-")
            found.append((line, slug + (f"-{seen[slug]}" if slug in seen else "")))
            seen[slug] = seen.get(slug, 0) + 1
    return found


def section_link(anchors: Sequence[Tuple[str, str]], target: str, section: str, heading: str, text: str) -> str:
    """A Markdown link to the first heading line after the line section in target; to target itself if there is
    none."""
    lines = [line for line, _ in anchors]
    start = lines.index(section) if section in lines else len(lines)
    anchor = next((a for line, a in anchors[start:] if line == heading), None)
    return f"[{text}]({target}" + (f"#{anchor})" if anchor else ")")


def headline_models(study: TrainingStudy) -> List[str]:
    """The models of the study's headline comparisons that it also scores with the head off, in order, once each."""
    models = [m for c in study.comparisons if c.verdict for m in c.models if m in study.head_off]
    return list(dict.fromkeys(models))


def verdict_block(rendered: RenderedLedger, readme_file: str, results_file: str) -> str:
    """The Markdown between the README's markers: headline quality, headline cost, and the link to RESULTS.md."""
    target = os.path.relpath(os.path.abspath(results_file), os.path.dirname(os.path.abspath(readme_file)))
    anchors = heading_anchors(rendered.text)
    quality, short, cost, benchmarks = [], [], [], []
    for study in rendered.studies:
        if isinstance(study, TrainingStudy):
            renderer = rendered.renderers[study.folder]
            for comparison in (c for c in study.comparisons if c.verdict):
                link = section_link(anchors, target, renderer.heading, f"### {comparison.title}", comparison.title)
                for model in comparison.models:
                    lines, line = quality_lines(renderer, comparison, model, f"{link} (`{study.name}`)")
                    quality, short = quality + lines, short + [line]
            head_link = section_link(anchors, target, renderer.heading, renderer.head_off_heading,
                                     study.head_off_title)
            for model in headline_models(study):
                lines, line = head_lines(renderer, model, f"{head_link} (`{study.name}`)")
                quality, short = quality + lines, short + [line]
        elif study.verdict:
            link = section_link(anchors, target, "## Cost", f"### {study.title}", study.title)
            cost.append(cost_line(rendered.benchmarks[study.folder], link))
            benchmarks.append((study, rendered.benchmarks[study.folder]))
    short += cost_in_short(benchmarks)
    topics = ((["the headline comparisons' foreground means"] if quality else [])
              + (["the default's cost"] if cost else []))
    unmarked = '- none: mark one with `"verdict": true` in its study.json.'
    return "\n".join(
        ([f"**In short**, {' and '.join(topics)}, each detailed below:", "", *short, ""] if short else [])
        + [f"**Quality**: the per-case foreground mean, model − baseline [{CONFIDENCE_LEVEL:.0%} bootstrap interval] and "
         "the Wilcoxon p corrected over classes and metrics (BH); where the cases are slices of one volume, both "
         "take whole validation slabs as the independent units (RESULTS.md says how). **better** or **worse** needs "
         "p (BH) < "
         f"{SIGNIFICANCE} and an interval that excludes 0 on the side the Wilcoxon ranks point to; with p (BH) < "
         f"{SIGNIFICANCE}, **mixed** where the ranks point against the mean (a few large differences outweigh many "
         "small ones) and **better** or **worse by the signed ranks only** where the interval includes 0; a "
         "better or worse no larger "
         "than the noise floor (the larger seed-to-seed mean difference of the two trainers) is **within the "
         "seed-to-seed noise**. Head on − "
         "head off scores the same models with the point head switched off (N_test 0, the coarse U-Net output): "
         "what the head adds at inference. A trainer "
         f"that has not levelled off (its EMA pseudo-Dice still rose by more than {LEVELLED_OFF} over the last "
         f"{LEVELLING_SHARE:.0%} of epochs, mean over the folds compared) is named: the schedule may be too short "
         "for that comparison.", ""]
        + (quality or [unmarked])
        + ["", f"**Cost**: ratios to {COST_BASELINE} on the same plan, each a range over the plans measured and the "
               "benchmark's rounds (each round measures every trainer in turn). A ratio's distance from 1 means little "
               f"where it is within how much the trainer's own times or {COST_BASELINE}'s varied between identical "
               "rounds, given beside the ratios where the benchmark ran several rounds.", ""]
        + (cost or [unmarked])
        + ["", f"Every number, per class, with the noise floor, learning curves and all benchmark tables: "
               f"[{os.path.basename(results_file)}]({target})."])


def replace_block(readme: str, block: str, readme_file: str) -> str:
    """readme with what lies between BEGIN and END replaced by block, the rest unchanged; StudyError unless it holds
    each once, in this order."""
    begin, end = readme.find(BEGIN), readme.find(END)
    if readme.count(BEGIN) != 1 or readme.count(END) != 1 or end < begin:
        raise StudyError(f"{readme_file} has no verdict block: add the two lines '{BEGIN}' and '{END}' (once each, "
                         "in this order) where the verdict goes, or give the README that has them with --readme")
    return readme[:begin + len(BEGIN)] + "\n\n" + block + "\n\n" + readme[end:]


def _read(path: str, option: str) -> str:
    if not os.path.isfile(path):
        raise StudyError(f"{path}: no such file: give it with {option}")
    return read_text(path)


def _documents(results_folder: str, results_file: str, readme_file: Optional[str],
               resamples: int) -> Tuple[RenderedLedger, str, str]:
    """RESULTS.md rendered in memory (no figure drawn), the README as it is and as rendered ('' and '' when
    readme_file is None: no verdict block to render)."""
    rendered = render_ledger(results_folder, results_file, resamples)
    if readme_file is None:
        return rendered, "", ""
    readme = _read(readme_file, "--readme")
    return rendered, readme, replace_block(readme, verdict_block(rendered, readme_file, results_file), readme_file)


def default_readme(results_folder: str) -> Optional[str]:
    """README.md beside the ledger folder if it holds the verdict marker, else None (RESULTS.md alone is rendered)."""
    readme = os.path.join(os.path.dirname(os.path.abspath(results_folder)), "README.md")
    if not os.path.isfile(readme):
        return None
    return readme if BEGIN in read_text(readme) else None


def write_documents(results_folder: str, results_file: str, readme_file: Optional[str], resamples: int) -> List[str]:
    """Writes RESULTS.md, its figures, the benchmark tables and the README's verdict block (the README only if it
    changed; none if readme_file is None), once all are rendered; returns the studies rendered."""
    rendered, readme, new_readme = _documents(results_folder, results_file, readme_file, resamples)
    rendered.write(results_file)
    if new_readme != readme:
        write_text(new_readme, readme_file)
    return [s.name for s in rendered.studies]


def stale_documents(results_folder: str, results_file: str, readme_file: Optional[str], resamples: int) -> List[str]:
    """What differs from the ledger's rendering ('RESULTS.md', a benchmark table, 'the verdict in README.md'),
    writing nothing and drawing no figure."""
    rendered, readme, new_readme = _documents(results_folder, results_file, readme_file, resamples)
    stale = []
    if not os.path.isfile(results_file) or _read(results_file, "-o") != rendered.text:
        stale.append(shown_path(results_file))
    stale += [shown_path(path) for path in rendered.stale_tables()]
    if new_readme != readme:
        stale.append(f"the verdict in {shown_path(readme_file)}")
    return stale


def shown_path(path: str) -> str:
    """path relative to the working directory if it lies below it, else absolute."""
    relative = os.path.relpath(os.path.abspath(path))
    return os.path.abspath(path) if relative.startswith(os.pardir) else relative
