"""The atlas's HTML: index (model card), one page per layer, one per channel, ``atlas.json``.

Plain HTML5 with the package's own ``atlas.css`` and ``atlas.js`` (table sorting) copied next
to it; histograms and label distributions are inline SVG. Nothing is fetched from outside:
every link and image is a relative path inside the folder, so the site opens from ``file://``.
"""

from __future__ import annotations

import hashlib
import html
import shutil
from pathlib import Path

from tqdm.auto import tqdm

from deconv.atlas.model_card import LayerCard
from deconv.atlas.stages import load_layer
from deconv.atlas.workdir import WORK, WorkDir, atomic_write, slug, write_json

__all__ = ["write_site", "layer_page", "channel_page"]

STATIC = Path(__file__).resolve().parent / "static"
ASSETS = ("atlas.css", "atlas.js")


def layer_page(layer: str) -> str:
    """Site-relative path of a layer's page."""
    return f"layers/{slug(layer)}.html"


def channel_page(layer: str, channel: int) -> str:
    """Site-relative path of a channel's page."""
    return f"channels/{slug(layer)}/c{channel:04d}.html"


def _e(value) -> str:
    return html.escape(str(value), quote=True)


def _num(value, digits: int = 4) -> str:
    if value is None:
        return "&ndash;"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return _e(value)


def _pair(values) -> str:
    return "&times;".join(map(str, values)) if values else "?"


def _document(title: str, root: str, body: str) -> str:
    return (f"<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{_e(title)}</title>\n<link rel=\"icon\" href=\"data:,\">\n"
            f"<link rel=\"stylesheet\" href=\"{root}atlas.css\">\n"
            f"<script src=\"{root}atlas.js\"></script>\n</head>\n<body>\n{body}\n</body>\n"
            f"</html>\n")


def _write(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def _histogram_svg(histogram: dict, images: int) -> str:
    counts = histogram["counts"]
    width, height, pad = 288, 96, 16
    peak = max(max(counts), 1)
    bar = (width - 2 * pad) / len(counts)
    rects = []
    for i, count in enumerate(counts):
        h = (height - 2 * pad) * count / peak
        rects.append(f"<rect x=\"{pad + i * bar:.1f}\" y=\"{height - pad - h:.1f}\" "
                     f"width=\"{max(bar - 1, 1):.1f}\" height=\"{h:.1f}\" fill=\"#4a78b5\">"
                     f"<title>{count} images</title></rect>")
    return (f"<svg width=\"{width}\" height=\"{height}\" role=\"img\" aria-label=\"histogram\">"
            + "".join(rects)
            + f"<line x1=\"{pad}\" y1=\"{height - pad}\" x2=\"{width - pad}\" "
              f"y2=\"{height - pad}\" stroke=\"#333\"/>"
            + f"<text x=\"{pad}\" y=\"{height - 3}\">{histogram['low']:.3g}</text>"
            + f"<text x=\"{width - pad}\" y=\"{height - 3}\" text-anchor=\"end\">"
              f"{histogram['high']:.3g}</text>"
            + f"<text x=\"{pad}\" y=\"11\">peak bin: {peak} of {images} images</text></svg>")


def _labels_svg(label_counts: dict[str, int]) -> str:
    if not label_counts:
        return "<p class=\"muted\">no labels</p>"
    total = sum(label_counts.values())
    rows = sorted(label_counts.items(), key=lambda kv: (-kv[1], kv[0]))
    line, width = 16, 300
    parts = []
    for i, (name, count) in enumerate(rows):
        w = 150 * count / total
        parts.append(f"<text x=\"0\" y=\"{i * line + 12}\">{_e(name)}</text>"
                     f"<rect x=\"110\" y=\"{i * line + 3}\" width=\"{w:.1f}\" height=\"11\" "
                     f"fill=\"#c07a2c\"/><text x=\"{114 + w:.1f}\" y=\"{i * line + 12}\">"
                     f"{count}</text>")
    return (f"<svg width=\"{width}\" height=\"{len(rows) * line + 4}\" role=\"img\" "
            f"aria-label=\"label distribution\">" + "".join(parts) + "</svg>")


def _index_html(model: dict, data: dict, settings: dict, cards: list[LayerCard],
                layers: dict[str, dict], timings: dict) -> str:
    rows = []
    for card in cards:
        info = layers[card.name]
        rf, jump = _pair(card.receptive_field), _pair(card.jump)
        rows.append(
            f"<tr><td><a href=\"{layer_page(card.name)}\">{_e(card.name)}</a></td>"
            f"<td class=\"num\">{_num(card.paper)}</td><td>{_e(card.type)}</td>"
            f"<td>{_e('x'.join(map(str, card.output_shape)))}</td><td class=\"num\">{rf}</td>"
            f"<td class=\"num\">{jump}</td><td class=\"num\">{card.parameters:,}</td>"
            f"<td class=\"num\">{card.cumulative_parameters:,}</td>"
            f"<td class=\"num\">{card.channels}</td><td class=\"num\">{info['dead']}</td>"
            f"<td class=\"num\">{info['optima']} / {card.channels}</td></tr>")
    facts = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in data.items()
                    if not isinstance(v, (list, dict)))
    opt = settings["optima"]
    rule = settings.get("distinct")
    distinct = "" if not rule else (
        f", distinct regions: of the best {rule['candidates']}&times; as many, none overlapping a "
        f"better one of the same photo by more than {rule['max_overlap']:g} of the smaller "
        f"receptive field")
    times = "".join(f"<dt>{_e(k)}</dt><dd>{v:.1f} s</dd>" for k, v in timings.items())
    body = f"""<h1>Atlas of {_e(model['name'])}</h1>
<p class="muted">{_e(model['source'])}</p>
<nav><a href="atlas.json">atlas.json (every number and file)</a></nav>
<h2>Model card</h2>
<table class="sortable" id="model-card"><thead><tr><th data-sort="text">layer</th>
<th data-sort="num">paper layer</th><th data-sort="text">type</th><th>output shape</th>
<th>receptive field (px)</th><th>jump (px)</th><th data-sort="num">parameters</th>
<th data-sort="num">cumulative parameters</th><th data-sort="num">channels</th>
<th data-sort="num">dead channels</th><th>optima</th></tr></thead>
<tbody>{''.join(rows)}</tbody></table>
<p class="muted">Parameters: of the modules from the previous listed layer (exclusive) to this one.
Dead: the map is zero on every image. Receptive field and jump for a
{model['input_size'][0]}&times;{model['input_size'][1]} input.</p>
<h2>Data</h2><dl class="facts">{facts}</dl>
<h2>Settings</h2><dl class="facts"><dt>top images per channel</dt><dd>{settings['k']}{distinct}</dd>
<dt>optima</dt><dd>{opt['steps']} Adam steps (lr {opt['lr']}), {opt['size']} px,
{_e(opt['parametrization'])} parametrization, decorrelated colour, standard transforms,
seed {opt['seed']}</dd><dt>model fingerprint</dt><dd><code>{model['fingerprint'][:16]}</code></dd>
</dl>
<h2>This build</h2><dl class="facts">{times}</dl>"""
    return _document(f"Atlas of {model['name']}", "", body)


def _layer_html(card: LayerCard, info: dict, labelled: bool, prev_card, next_card) -> str:
    stats, proj, optima = info["stats"], info["projections"], info["optima"]
    rows = []
    for record in stats["channels"]:
        c = record["channel"]
        thumb = proj.get(c, {}).get("files", {}).get("thumb")
        opt = optima.get(c)
        cells = [f"<td><a href=\"../{channel_page(card.name, c)}\">"
                 + (f"<img class=\"thumb\" src=\"../{thumb}\" alt=\"channel {c}\">"
                    if thumb else "") + "</a></td>",
                 f"<td class=\"num\" data-value=\"{c}\"><a href=\"../"
                 f"{channel_page(card.name, c)}\">{c}</a></td>",
                 f"<td class=\"num\" data-value=\"{record['max_activation']}\">"
                 f"{_num(record['max_activation'])}</td>",
                 f"<td class=\"num\" data-value=\"{record['dead_fraction']}\">"
                 f"{_num(record['dead_fraction'], 3)}</td>"]
        if labelled:
            top = max(record["label_counts"].items(), key=lambda kv: kv[1])[0] \
                if record.get("label_counts") else ""
            cells.append(f"<td class=\"num\" data-value=\"{record['label_entropy']}\">"
                         f"{_num(record['label_entropy'], 3)}</td><td>{_e(top)}</td>")
        cells.append(f"<td data-value=\"{1 if opt else 0}\">"
                     + (f"<img class=\"thumb\" src=\"../{opt['file']}\" alt=\"optimum {c}\" "
                        f"style=\"width:96px\">" if opt else "<span class=\"muted\">not yet</span>")
                     + "</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    nav = ["<a href=\"../index.html\">index</a>"]
    if prev_card:
        nav.append(f"<a href=\"../{layer_page(prev_card.name)}\">&larr; {_e(prev_card.name)}</a>")
    if next_card:
        nav.append(f"<a href=\"../{layer_page(next_card.name)}\">{_e(next_card.name)} &rarr;</a>")
    label_head = ("<th data-sort=\"num\">label entropy (bits)</th><th data-sort=\"text\">"
                  "top label</th>") if labelled else ""
    done = len(optima)
    body = f"""<nav>{''.join(nav)}</nav>
<h1>Layer {_e(card.name)}{f' (paper layer {card.paper})' if card.paper else ''}</h1>
<p>{_e(card.type)}, output {_e('x'.join(map(str, card.output_shape)))}, {card.channels} channels,
receptive field {_pair(card.receptive_field)} px, jump {_pair(card.jump)} px;
mined over {stats['images']} images. Optima: {done} of {card.channels} channels so far
(a later run with <code>--optima N</code> fills in more).</p>
<p class="muted">Click a column header to sort. Thumbnail: the deconvnet projection of the
channel's strongest activation. Dead fraction: share of images on which the map is zero
everywhere.{' Label entropy: of the top-k images' + "'" + ' labels (0 = one class only).'
if labelled else ''}</p>
<table class="sortable" id="channels"><thead><tr><th>projection</th>
<th data-sort="num">channel</th><th data-sort="num">max activation</th>
<th data-sort="num">dead fraction</th>{label_head}<th data-sort="num">optimum (+ / &minus;)</th>
</tr></thead><tbody>{''.join(rows)}</tbody></table>"""
    return _document(f"{card.name}: every channel", "../", body)


def _links_html(layer: str | None, pairs: list | None, title: str,
                through: int = 1) -> str:
    if not layer or not pairs:
        return ""
    what = "&Sigma;|w|" if through <= 1 else "path strength"
    items = "".join(f"<li><a href=\"../../{channel_page(layer, j)}\">{_e(layer)} channel {j}</a>"
                    f" <span class=\"muted\">({what} = {w:.3g})</span></li>"
                    for j, w in pairs)
    note = "" if through <= 1 else (
        f"<p class=\"muted\">through {through} convolutions: the summed |w| products of "
        f"every path, relative to the layer pair's strongest</p>")
    return f"<div><h2>{_e(title)}</h2><ul>{items}</ul>{note}</div>"


def _channel_html(card: LayerCard, record: dict, files: dict, opt: dict | None, images: int,
                  class_names, links: dict, prev_layer: str | None, next_layer: str | None,
                  k: int, tile: int) -> str:
    c = record["channel"]
    nav = ["<a href=\"../../index.html\">index</a>",
           f"<a href=\"../../{layer_page(card.name)}\">layer {_e(card.name)}</a>"]
    if c > 0:
        nav.append(f"<a href=\"../../{channel_page(card.name, c - 1)}\" rel=\"prev\">"
                   f"&larr; channel {c - 1}</a>")
    if c + 1 < card.channels:
        nav.append(f"<a href=\"../../{channel_page(card.name, c + 1)}\" rel=\"next\">"
                   f"channel {c + 1} &rarr;</a>")
    values = record["top_values"]
    n = len(values)
    captions = {"patches": "image patches<br><span class=\"muted\">(receptive field)</span>",
                "deconv": "deconvnet<br><span class=\"muted\">(Zeiler &amp; Fergus)</span>",
                "guided": "guided backprop<br><span class=\"muted\">(Springenberg et al.)"
                          "</span>"}
    cells = ["<tr><th>rank</th>" + "".join(f"<th>{i + 1}</th>" for i in range(n)) + "</tr>"]
    for kind in ("patches", "deconv", "guided"):
        if kind in files:
            cells.append(f"<tr><td>{captions[kind]}</td><td class=\"strip\" colspan=\"{n}\">"
                         f"<img src=\"../../{files[kind]}\" alt=\"{kind}\"></td></tr>")
    cells.append("<tr><td>activation</td>" + "".join(f"<td class=\"num\">{v:.3g}</td>"
                                                      for v in values) + "</tr>")
    cells.append("<tr><td>image id</td>" + "".join(f"<td class=\"num\">{i}</td>"
                                                    for i in record["top_image_ids"]) + "</tr>")
    if "top_labels" in record:
        cells.append("<tr><td>label</td>" + "".join(
            f"<td class=\"label\">{_e(class_names[v] if class_names else v)}</td>"
            for v in record["top_labels"]) + "</tr>")
    columns = ("<colgroup><col style=\"width:9em\">"
               + f"<col style=\"width:{tile + 2}px\">" * n + "</colgroup>")
    if opt:
        width = 2 * opt["size"] + 2
        shown = width * max(1, 256 // width)  # small optima enlarged, whole pixels
        optimum = (f"<img class=\"pixelated\" src=\"../../{opt['file']}\" alt=\"optima\" "
                   f"style=\"width:{shown}px\">"
                   f"<p class=\"muted\">left: positive optimum (objective "
                   f"{opt['objective_positive']:.3g}); right: negative optimum (objective "
                   f"{opt['objective_negative']:.3g}); {opt['steps']} steps, "
                   f"{opt['seconds']:.2f} s per channel.</p>")
    else:
        optimum = ("<p class=\"muted\">No optimum yet: build again with a larger "
                   "<code>--optima</code> budget to fill it in.</p>")
    filt = ""
    if "filter" in files:
        filt = (f"<div><h2>Filter weights</h2><img class=\"pixelated\" "
                f"src=\"../../{files['filter']}\" alt=\"filter\"><p class=\"muted\">zero grey, "
                f"&plusmn;max|w| white/black</p></div>")
    labels = ""
    if "label_counts" in record:
        labels = (f"<div><h2>Labels of the top {len(values)}</h2>"
                  f"{_labels_svg(record['label_counts'])}<p>entropy "
                  f"{record['label_entropy']:.3f} bits</p></div>")
    dead = record["dead_fraction"]
    body = f"""<nav>{''.join(nav)}</nav>
<h1>{_e(card.name)} channel {c}</h1>
<dl class="facts"><dt>max activation</dt><dd>{record['max_activation']:.4g}</dd>
<dt>mean of per-image maxima</dt><dd>{record['mean_max']:.4g}</dd>
<dt>dead fraction</dt><dd class="{'dead' if dead >= 0.99 else ''}">{dead:.3f}
(map zero everywhere on {round(dead * images)} of {images} images)</dd></dl>
<h2>Top {k} activations</h2>
<table class="topk" style="width:{9 * 16 + n * (tile + 2)}px">{columns}<tbody>{''.join(cells)}
</tbody></table>
<div class="row"><div><h2>Optima</h2>{optimum}</div>{filt}</div>
<div class="row"><div><h2>Activation histogram</h2>{_histogram_svg(record['histogram'], images)}
<p class="muted">spatial maximum of the map per image, {images} images</p></div>{labels}</div>
<div class="row">{_links_html(prev_layer, links['previous'][c] if links.get('previous') else None,
                               'Strongest inputs (previous layer)',
                               links.get('through_previous', 1))}
{_links_html(next_layer, links['next'][c] if links.get('next') else None,
             'Feeds most (next layer)', links.get('through_next', 1))}</div>"""
    return _document(f"{card.name} channel {c}", "../../", body)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_site(out: Path, work: WorkDir, model: dict, data: dict, settings: dict,
               cards: list[LayerCard], links: dict, class_names, timings: dict,
               progress: bool = True) -> dict:
    """Write every page, the assets and ``atlas.json``; return the manifest."""
    out = Path(out)
    for name in ASSETS:
        shutil.copyfile(STATIC / name, out / name)
    layers = {}
    for card in cards:
        info = load_layer(work, card.name, card.channels)
        info["dead"] = sum(1 for r in info["stats"]["channels"] if r["dead_fraction"] >= 1.0)
        layers[card.name] = info
    labelled = class_names is not None
    total = len(cards) + sum(c.channels for c in cards) + 1
    bar = tqdm(total=total, desc="pages", unit="page", disable=not progress)
    manifest_layers = []
    try:
        for i, card in enumerate(cards):
            info = layers[card.name]
            prev_card = cards[i - 1] if i > 0 else None
            next_card = cards[i + 1] if i + 1 < len(cards) else None
            _write(out / layer_page(card.name),
                   _layer_html(card, info, labelled, prev_card, next_card))
            bar.update(1)
            channels = []
            for record in info["stats"]["channels"]:
                c = record["channel"]
                files = info["projections"].get(c, {}).get("files", {})
                opt = info["optima"].get(c)
                _write(out / channel_page(card.name, c), _channel_html(
                    card, record, files, opt, info["stats"]["images"], class_names,
                    links.get(card.name, {}), prev_card.name if prev_card else None,
                    next_card.name if next_card else None, settings["k"], settings["tile"]))
                bar.update(1)
                entry = dict(record, page=channel_page(card.name, c), images=files,
                             optimum=opt)
                for side in ("previous", "next"):
                    if links.get(card.name, {}).get(side):
                        entry[f"{side}_links"] = links[card.name][side][c]
                channels.append(entry)
            manifest_layers.append(dict(card.to_dict(), page=layer_page(card.name),
                                        images=info["stats"]["images"],
                                        map_size=info["stats"]["map_size"],
                                        dead_channels=info["dead"],
                                        optima_done=len(info["optima"]), feature_maps=channels))
        summary = {name: {"dead": info["dead"], "optima": len(info["optima"])}
                   for name, info in layers.items()}
        _write(out / "index.html", _index_html(model, data, settings, cards, summary, timings))
        bar.update(1)
    finally:
        bar.close()
    files = []
    for path in sorted(out.rglob("*")):
        rel = path.relative_to(out).as_posix()
        if path.is_file() and not rel.startswith(WORK + "/") and rel != "atlas.json" \
                and not rel.endswith(".tmp"):
            files.append({"path": rel, "bytes": path.stat().st_size, "sha256": _sha256(path)})
    seconds = [o["seconds"] for info in layers.values() for o in info["optima"].values()]
    manifest = {"format": settings["format"], "model": model, "data": data,
                "settings": settings, "class_names": class_names, "layers": manifest_layers,
                "timings": dict(timings, seconds_per_optimum_mean=(
                    round(sum(seconds) / len(seconds), 4) if seconds else None)),
                "files": files, "site_bytes": sum(f["bytes"] for f in files)}
    write_json(out / "atlas.json", manifest)
    return manifest
