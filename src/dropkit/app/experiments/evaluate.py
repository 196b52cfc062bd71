"""``dropkit evaluate``: how far to trust each method's uncertainty, in distribution,
under dataset shift and out of distribution.

Run::

    dropkit evaluate --members 5 --samples 30 --out runs/evaluate

Trains (or resumes, each in its own folder) one network with dropout and M networks
without (seeds 0..M-1), all holding out the same validation split, then sets side by
side the methods a practitioner chooses between: the dropout network with weight scaling
(``deterministic``), with temperature scaling fitted on the validation split
(``temperature``), with Monte Carlo dropout (``mc-dropout``, T passes) and with Monte
Carlo dropout in its last dropout layer only (``mc-last-layer``), and the deep ensemble
(``ensemble``). On the test digits, rotated 0-180 degrees, translated 0-14 pixels and
corrupted at five intensities (Ovadia et al. 2019): accuracy, NLL, NLL after temperature
scaling, Brier, ECE (equal-width and equal-mass bins), AURC and the AUROC of flagging the
method's own errors by predictive entropy. Out of distribution (photograph crops, noise):
AUROC, AUPR in and out and FPR at 95% TPR by max probability, predictive entropy and
mutual information. Every rate and error is a fraction.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from dropkit import uncertainty as U
from dropkit.app.experiments import shift as S
from dropkit.app.experiments.data import Dataset
from dropkit.app.experiments.engine import (
    MC_STRATEGY,
    RunOptions,
    TrainConfig,
    check_samples,
    load_final,
    predict,
    validation_split,
)
from dropkit.app.experiments.ensemble import train_all
from dropkit.app.experiments.io import atomic_write_json, check_manifest
from dropkit.app.experiments.report import plt, print_table, save_figure, write_report
from dropkit.errors import UsageError
from dropkit.inference.mc import mc_predict
from dropkit.tools.rates import set_rate
from dropkit.tools.sites import dropout_sites

__all__ = ["run_evaluate", "METHODS", "conditions", "method_scores", "ood_scores",
           "predictors", "held_out", "HELD_OUT", "train_all", "open_run", "temperature_of"]

METHODS = ("deterministic", "temperature", "mc-dropout", "mc-last-layer", "ensemble")
VAL_FRACTION = 0.1  # the validation split temperature scaling is fitted on
Predict = Callable[[Tensor], Tensor]  # inputs (N, F) -> probability samples (S, N, C)


def conditions(data: Dataset, quick: bool, seed: int) -> dict[str, dict[float, Tensor]]:
    """The test inputs under each shift, by kind and level (level 0: the clean digits)."""
    x, shape = data.x_test, data.image_shape
    assert shape is not None
    g = torch.Generator().manual_seed(seed)
    rotations = (0, 90, 180) if quick else S.ROTATIONS
    translations = (0, 8, 14) if quick else S.TRANSLATIONS
    intensities = (1, 5) if quick else (1, 2, 3, 4, 5)
    out: dict[str, dict[float, Tensor]] = {
        "rotate": {d: S.rotated(x, shape, d) if d else x for d in rotations},
        "translate": {p: S.translated(x, shape, p) if p else x for p in translations},
    }
    for name in S.CORRUPTIONS:
        out[name] = {0: x, **{i: S.corrupted(x, shape, name, i, g) for i in intensities}}
    return out


def _validation(config: TrainConfig, data: Dataset) -> tuple[Tensor, Tensor]:
    """The validation split the runs held out (of the first ``train_size`` examples)."""
    size = config.train_size if config.train_size is not None else len(data.x_train)
    _, val = validation_split(size, VAL_FRACTION)
    return data.x_train[val], data.y_train[val]


def _last_layer_only(net: nn.Module, example: Tensor) -> nn.Module:
    """A copy of ``net`` whose every dropout site but the last to run draws nothing. The
    order is observed (forward hooks on a pass over ``example``), not taken from the
    order the modules were registered in; a site that is not a module (a functional
    call) has no hook to observe it by, and is refused by name."""
    last_only = copy.deepcopy(net)
    sites = dropout_sites(last_only, example_input=example)
    calls = [s.name for s in sites if s.kind != "module"]
    if calls:
        raise UsageError(f"evaluate: cannot tell when the dropout sites {calls} run (they are "
                         "not modules), so the last-layer method cannot pick its layer",
                         "model")
    ran: list[str] = []
    hooks = [s.module.register_forward_hook(lambda *_, name=s.name: ran.append(name))
             for s in sites]
    try:
        with torch.no_grad():
            last_only.eval()(example)
    finally:
        for h in hooks:
            h.remove()
    if not ran:
        raise UsageError("evaluate: no dropout site ran on an example input", "model")
    set_rate(last_only, {s.name: 0.0 for s in sites if s.name != ran[-1]},
             example_input=example)
    return last_only


def predictors(configs: dict[str, TrainConfig], data: Dataset, out: Path, members: int,
                samples: int, seed: int) -> tuple[dict[str, Predict], float]:
    """Each method's predictor (inputs -> probability samples (S, N, C)) from the runs
    trained in ``out``, and the temperature fitted on the validation split."""
    net = load_final(configs["dropout"], data, out / "runs" / "dropout-seed0").eval()
    nets = [load_final(configs["member"], data, out / "runs" / f"member-seed{k}").eval()
            for k in range(members)]
    x_val, y_val = _validation(configs["dropout"], data)
    temperature = U.fit_temperature(predict(net, x_val), y_val)
    last = _last_layer_only(net, data.x_test[:2]).eval()
    scaled = U.TemperatureScaled(net, temperature).eval()

    def sampled(model: nn.Module) -> Predict:
        def run(x: Tensor) -> Tensor:
            g = torch.Generator().manual_seed(seed)
            return mc_predict(model, x, samples, chunk_size=25, strategy=MC_STRATEGY,
                              generator=g).softmax(-1)
        return run

    return {
        "deterministic": lambda x: predict(net, x).softmax(-1)[None],
        "temperature": lambda x: predict(scaled, x).softmax(-1)[None],
        "mc-dropout": sampled(net),
        "mc-last-layer": sampled(last),
        "ensemble": lambda x: torch.stack([predict(m, x).softmax(-1) for m in nets]),
    }, temperature


def temperature_of(probs: Tensor, y: Tensor) -> float:
    """The temperature that calibrates probability samples (S, N, C) on targets ``y``,
    their mean's log taken as logits (:func:`dropkit.uncertainty.fit_temperature`)."""
    return U.fit_temperature(_log(probs.mean(0)), y)


def _log(p: Tensor) -> Tensor:
    return p.double().clamp_min(torch.finfo(torch.float64).tiny).log()


def method_scores(probs: Tensor, y: Tensor, temperature: float) -> dict[str, float]:
    """The in-distribution and shift measures of probability samples (S, N, C);
    ``temperature`` (:func:`temperature_of` on the validation split) gives the NLL after
    temperature scaling."""
    mean = probs.mean(0).double()
    errors = mean.argmax(-1) != y
    entropy = U.predictive_entropy(probs.double())
    calibrated = float(torch.nn.functional.cross_entropy(_log(mean) / temperature, y))
    flagged = (U.auroc(entropy, errors) if 0 < int(errors.sum()) < len(errors)
               else float("nan"))
    return {"accuracy": 1 - float(errors.double().mean()), "nll": float(U.nll(mean, y)),
            "calibrated_nll": calibrated, "brier": float(U.brier(mean, y)),
            "ece": U.ece(mean, y).ece, "ece_mass": U.ece(mean, y, binning="mass").ece,
            "aurc": U.aurc(entropy, errors), "error_auroc": flagged}


def _uncertainties(probs: Tensor) -> dict[str, Tensor]:
    p = probs.double()
    out = {"max probability": 1 - p.mean(0).max(-1).values,
           "entropy": U.predictive_entropy(p)}
    if probs.shape[0] > 1:
        out["mutual information"] = U.mutual_information(p)
    return out


def ood_scores(probs: dict[str, dict[str, Tensor]], inside: str = "test digits"
               ) -> dict[str, dict[str, dict[str, dict[str, float]]]]:
    """method -> OOD set -> uncertainty score -> detection measures, from each method's
    probability samples on the in-distribution inputs (``probs[method][inside]``) and on
    each other set."""
    out: dict[str, dict[str, dict[str, dict[str, float]]]] = {}
    for method, sets in probs.items():
        ref = _uncertainties(sets[inside])
        out[method] = {}
        for name, p in sets.items():
            if name == inside:
                continue
            far = _uncertainties(p)
            out[method][name] = {score: asdict(U.detection(ref[score], far[score]))
                                 for score in ref}
    return out


def _shift_results(predictors: dict[str, Predict], config: TrainConfig, data: Dataset,
                   quick: bool, seed: int) -> tuple[dict[str, Any], dict[str, float]]:
    """method -> shift kind -> level -> measures, and each method's prediction seconds
    on the clean test set."""
    x_val, y_val = _validation(config, data)
    shifted = conditions(data, quick, seed)
    results: dict[str, Any] = {m: {} for m in predictors}
    seconds = {}
    for method, run in predictors.items():
        temperature = temperature_of(run(x_val), y_val)
        for kind, levels in shifted.items():
            results[method][kind] = {}
            for level, x in levels.items():
                start = time.perf_counter()
                probs = run(x)
                if kind == "rotate" and level == 0:  # the clean test set
                    seconds[method] = time.perf_counter() - start
                results[method][kind][str(level)] = method_scores(probs, data.y_test,
                                                                  temperature)
    return results, seconds


HELD_OUT = 5  # the held-out-class protocol trains on digits 0..4; 5..9 are out


def held_out(configs: dict[str, TrainConfig], data: Dataset, out: Path, members: int,
             samples: int, seed: int, options: RunOptions) -> dict[str, dict[str, float]]:
    """The held-out-class protocol: the same methods trained (resumably, in
    ``out/held-out``) on the digits below ``HELD_OUT`` alone, asked to flag the test
    digits of the other classes against their own classes' (AUROC etc. by entropy)."""
    keep, keep_test = data.y_train < HELD_OUT, data.y_test < HELD_OUT
    sub = replace(data, x_train=data.x_train[keep], y_train=data.y_train[keep],
                  x_test=data.x_test[keep_test], y_test=data.y_test[keep_test],
                  n_classes=HELD_OUT)
    size = int(keep.sum())
    trimmed = {k: replace(c, train_size=None if c.train_size is None else
                          min(c.train_size, size)) for k, c in configs.items()}
    folder = out / "held-out"
    train_all(trimmed, sub, folder, members, options)
    runs, _ = predictors(trimmed, sub, folder, members, samples, seed)
    unseen = data.x_test[~keep_test]
    return {m: asdict(U.detection(U.predictive_entropy(run(sub.x_test).double()),
                                  U.predictive_entropy(run(unseen).double())))
            for m, run in runs.items()}


def _figures(shift: dict[str, Any], ood_probs: dict[str, dict[str, Tensor]], labels: Tensor,
             out: Path) -> list[tuple[Path, str]]:
    """Measures against rotation and translation per method (Ovadia et al. Fig. 1), and
    predictive entropy in vs out of distribution per method (Lakshminarayanan et al.)."""
    figures = []
    for kind in next(iter(shift.values())):  # rotate, translate, each corruption
        fig, axes = plt().subplots(1, 4, figsize=(14, 3.2))
        for ax, key in zip(axes, ("accuracy", "nll", "brier", "ece"), strict=True):
            for method, kinds in shift.items():
                levels = kinds[kind]
                ax.plot([float(v) for v in levels], [levels[v][key] for v in levels],
                        marker="o", ms=3, label=method)
            ax.set_xlabel({"rotate": "degrees", "translate": "pixels"}.get(kind, "intensity"))
            ax.set_title(key)
        axes[0].legend(fontsize=7)
        figures.append((save_figure(fig, out / f"{kind}.png"),
                        f"Measures against {kind} per method"))
    fig, axes = plt().subplots(1, len(ood_probs), figsize=(3.2 * len(ood_probs), 3))
    for ax, (method, sets) in zip(axes, ood_probs.items(), strict=True):
        for name, probs in sets.items():
            ax.hist(U.predictive_entropy(probs.double()).numpy(), bins=30, alpha=0.5,
                    density=True, label=name)
        ax.set_title(method)
    axes[0].legend(fontsize=7)
    figures.append((save_figure(fig, out / "entropy.png"),
                    "Predictive entropy on test digits and out-of-distribution inputs"))
    fig, ax = plt().subplots(figsize=(5.5, 3.6))
    for method, sets in ood_probs.items():
        probs = sets["test digits"]
        curve = U.risk_coverage(U.predictive_entropy(probs.double()),
                                probs.mean(0).argmax(-1) != labels)
        ax.plot(curve.coverage.numpy(), curve.risk.numpy(), label=method)
    ax.set_xlabel("coverage (answered, least uncertain first)")
    ax.set_ylabel("risk (error among answered)")
    ax.legend(fontsize=7)
    figures.append((save_figure(fig, out / "risk-coverage.png"),
                    "Selective prediction: risk against coverage on the test digits"))
    return figures


def open_run(options: RunOptions, members: int, samples: int, dropout: float,
          input_dropout: float, seed: int) -> tuple[dict[str, TrainConfig], Path, Dataset]:
    """The configurations, folder and data, every check made before any training."""
    for name, value, least in (("members", members, 2), ("samples", samples, 2),
                               ("seed", seed, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise UsageError(f"evaluate: expected `{name}` to be an int >= {least}, got "
                             f"{name}={value!r}", name)
    fraction = options.overrides.get("val_fraction", VAL_FRACTION)
    if fraction != VAL_FRACTION:
        raise UsageError(f"evaluate: `val_fraction` is fixed at {VAL_FRACTION} (the split "
                         f"temperature scaling is fitted on), got {fraction}", "val_fraction")
    options.config(20, dropout=dropout, input_dropout=input_dropout).validate()
    base, out, data = options.prepare(20, "runs/evaluate", dropout=0.0, input_dropout=0.0,
                                      val_fraction=VAL_FRACTION)
    if data.image_shape is None or data.task != "classification":
        raise UsageError(f"evaluate: `dataset` must be a set of images to classify, "
                         f"{base.dataset!r} is not", "dataset")
    configs = {"member": base,
               "dropout": replace(base, dropout=dropout, input_dropout=input_dropout)}
    check_samples(configs["dropout"], data, "evaluate")
    check_manifest(out, "evaluate", {**asdict(base), "members": members, "samples": samples,
                                     "dropout": dropout, "input_dropout": input_dropout})
    return configs, out, data


def _table(shift: dict[str, Any], ood: dict[str, Any], seconds: dict[str, float]
           ) -> tuple[list[str], list[list[str]]]:
    """The headline table: in distribution, at the largest rotation, and OOD AUROC."""
    header = ["method", "accuracy", "NLL", "NLL (T-scaled)", "ECE", "ECE (mass)", "AURC",
              "ECE at 180°", "OOD AUROC (photos)", "predict s"]
    rows = []
    for method, kinds in shift.items():
        clean = kinds["rotate"]["0"]
        far = kinds["rotate"][max(kinds["rotate"], key=float)]
        photos = ood[method]["photographs"]["entropy"]["auroc"]
        rows.append([method, f"{clean['accuracy']:.4f}", f"{clean['nll']:.4f}",
                     f"{clean['calibrated_nll']:.4f}", f"{clean['ece']:.4f}",
                     f"{clean['ece_mass']:.4f}", f"{clean['aurc']:.4f}", f"{far['ece']:.4f}",
                     f"{photos:.3f}", f"{seconds[method]:.2f}"])
    return header, rows


def _reading(shift: dict[str, Any], ood: dict[str, Any]) -> list[str]:
    def at(method: str, kind: str, key: str, far: bool) -> float:
        levels = shift[method][kind]
        return levels[max(levels, key=float) if far else "0"][key]

    calm = min(shift, key=lambda m: at(m, "rotate", "ece", False))
    rough = min(shift, key=lambda m: at(m, "rotate", "brier", True))
    ood_best = max(ood, key=lambda m: ood[m]["photographs"]["entropy"]["auroc"])
    return [f"Lowest ECE on the clean test digits: {calm}; lowest Brier score at the "
            f"largest rotation: {rough}; best at flagging photographs by entropy: "
            f"{ood_best}. Every number is a fraction (0.05 is 5 points)."]


def _ood_sets(data: Dataset, n: int, seed: int, fashion_root: str | None
              ) -> dict[str, Tensor]:
    """The out-of-distribution inputs: photograph crops, noise, and Fashion-MNIST's test
    images when ``fashion_root`` holds its IDX files."""
    assert data.image_shape is not None
    g = torch.Generator().manual_seed(seed + 1)
    sets = {"photographs": S.natural_patches(n, data.image_shape, g),
            "noise": S.noise_images(n, data.image_shape, g)}
    if fashion_root is not None:
        from dropkit.app.experiments.data import load_dataset

        fashion = load_dataset("fashion-mnist", root=fashion_root)
        if fashion.x_test.shape[1:] != data.x_test.shape[1:]:
            raise UsageError(f"evaluate: Fashion-MNIST's images do not fit {data.name}'s "
                             f"inputs {tuple(data.x_test.shape[1:])}", "fashion_root")
        sets["fashion-mnist"] = fashion.x_test[:n]
    return sets


def run_evaluate(options: RunOptions | None = None, *, members: int = 5, samples: int = 30,
                 dropout: float = 0.5, input_dropout: float = 0.2, quick: bool = False,
                 seed: int = 0, held_out_classes: bool = True,
                 fashion_root: str | None = None) -> dict[str, Any]:
    """Train (resumably) the dropout network and the ensemble, then measure every method
    in distribution, under shift and out of distribution; write ``results.json``, the
    figures and ``report.html``. ``quick``: three rotations and translations, two
    intensities, 200 inputs per out-of-distribution set (the CLI's ``--quick`` also
    shortens training). ``held_out_classes``: also train on digits 0-4 alone and flag
    5-9 (:func:`held_out`); ``fashion_root``: a folder of Fashion-MNIST's IDX files, an
    out-of-distribution set."""
    options = options if options is not None else RunOptions()
    log = options.log
    configs, out, data = open_run(options, members, samples, dropout, input_dropout, seed)
    sets = _ood_sets(data, 200 if quick else len(data.x_test), seed, fashion_root)
    log(f"dropkit evaluate: {data.name}, {configs['member'].model}, {members} members, "
        f"T = {samples}, {configs['member'].epochs} epochs -> {out}")
    histories = train_all(configs, data, out, members, options)
    runs, temperature = predictors(configs, data, out, members, samples, seed)
    shift, seconds = _shift_results(runs, configs["dropout"], data, quick, seed)
    n = min(len(x) for x in sets.values())
    ood_probs = {m: {"test digits": run(data.x_test[:n]), **{k: run(x) for k, x in sets.items()}}
                 for m, run in runs.items()}
    ood = ood_scores(ood_probs)
    unseen = held_out(configs, data, out, members, samples, seed, options) \
        if held_out_classes else None
    header, rows = _table(shift, ood, seconds)
    print_table(header, rows, log)
    reading = _reading(shift, ood)
    figures = _figures(shift, ood_probs, data.y_test[:n], out)
    settings = {**asdict(configs["member"]), "members": members, "samples": samples,
                "dropout": dropout, "input_dropout": input_dropout, "quick": quick,
                "held_out_classes": held_out_classes, "fashion_root": fashion_root}
    payload = {"settings": settings, "temperature": temperature, "shift": shift, "ood": ood,
               "held_out": unseen, "predict_seconds": seconds,
               "train_seconds": {k: sum(r["seconds"] for h in v for r in h)
                                 for k, v in histories.items()}, "reading": reading}
    atomic_write_json(out / "results.json", payload)
    report = write_report(out / "report.html", f"dropkit evaluate on {data.name}", reading,
                          [(header, rows)], figures, settings)
    log(reading[0])
    log(f"report: {report}")
    return payload
