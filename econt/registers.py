"""The ECON-T configuration of one run, read from the `init.yaml` of the CMS test vectors.

Two spellings of the file exist and both are read:
- the older one: `Algorithm.Global.{select, density}`, `AlgoDroplsb.Global: N`, and
  `FormatterBuffer.Global.active_etxs` as a *count* of output links;
- the newer one: `ConfigAlgo.Global.{alg_type, alg_high_density}`,
  `AlgoDroplsb.Global.drop_lsb: N`, and `active_etxs` as a *bit mask* of enabled links
  (0x7 = three links), `keep_auto_encoder_bits` for the autoencoder's 144-bit mask.
The two generations of tools that wrote them also differ in where an input link word
holds its four TCs: the older puts input TC 4l+k of link l in bits 7k..7k+6 (k = 0 the
lowest), the newer in bits 7(3-k)..7(3-k)+6 (k = 0 next to the header). The golden
vectors of each spelling agree with its own order only (on the same input words), so the
spelling decides the order (`AsicConfig.erx_msb_first`).
Per-TC registers (`Mux`, `Cal`, `AlgoThreshold`) are maps 0..47 -> value.

Every register is checked against its width in the ASIC's register map (`REGISTER_BITS`);
a bad one raises `ConfigError` naming it (`FormatterBuffer.Global.buff_t1: ...`). Values
the register holds but the ASIC's data path has no meaning for are refused too, with the
reason, where the CMS emulator itself stops on them (`Mux` above 47, 14 or 15 output
links, an `stc_type` above 4, an algorithm above 4); every other value the register holds
is emulated as the CMS emulator runs it (DropLSB above 4 acts as 0, thresholds and buffer
thresholds up to their full width, sync words above 11 bits, zero output links). Sections this emulator does not read
are ignored, but an unknown register inside a section it reads is an error: a misspelt
register must not silently fall back to its default. A register the file leaves out keeps
its power-on value (`AsicConfig`), as in the CMS tools, which start every run from the
register map's defaults (the `AE_8x8_c8_S2_ele_qkeras` vector sets no output-link count and
runs at the default two links).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import yaml

from econ_emd.base.errors import ConfigError
from econ_emd.base.yamlload import BoundedSafeLoader, YamlTooLarge
from econ_emd.geometry import N_TC

log = logging.getLogger(__name__)

MAX_ETX = 13
#: bits of every register the data path reads, from the ECON-T register map the CMS tools
#: use (`econt_sw` zmq_i2c/reg_maps/ECON_I2C_params_regmap.yaml, `size_byte` or the
#: parameter mask of each). `stc_type` is 2 bits there, but the golden vectors set type 4
#: (CTC4B), so the field the vectors were made for holds at least 3.
REGISTER_BITS = {"select": 3, "density": 1, "mux": 6, "cal": 12, "threshold": 24,
                 "drop_lsb": 8, "buff_t1": 16, "buff_t2": 16, "buff_t3": 8,
                 "eporttx_numen": 4, "use_sum": 1, "stc_type": 3, "tx_sync_word": 16,
                 "mask_ae": 128, "mask_ae2": 16}
#: the algorithm select register
ALGORITHMS = {0: "threshold_sum", 1: "super_trigger_cell", 2: "best_choice",
              3: "repeater", 4: "autoencoder"}
#: super-trigger-cell formats (stc_type)
STC_TYPES = {0: "STC4B: STC4, 5E4M sums", 1: "STC16, 5E4M sums", 2: "CTC4A: CTC4, 4E3M sums",
             3: "STC4A: STC4, 4E3M sums", 4: "CTC4B: CTC4, 5E4M sums"}
AE_MASK_BITS = 144
#: the largest DropLSB the algorithms apply; larger register values act as 0
MAX_DROP_LSB = 4
#: encoder weight registers: 12 blocks of 8 x 128-bit words and one 48-bit word
AE_BLOCKS = 12
AE_WORD_BITS = {**{f"weights_byte{16 * i}": 128 for i in range(8)}, "weights_byte128": 48}


@dataclass(frozen=True)
class AsicConfig:
    """The registers the data path reads, as typed values. A register the file does not
    set keeps its power-on value: the defaults here are those of the ECON-T register map
    the CMS emulator starts from (`econt_sw` zmq_i2c/reg_maps/ECON_I2C_params_regmap.yaml:
    algorithm 0 at low density, FMTBUF config 0x25 = 2 output links, use_sum 1, stc_type 1;
    buff_t1 0x30, buff_t2 0x1ff, buff_t3 0, tx_sync_word 0x070f; identity MUX, CAL 2048,
    thresholds and DropLSB 0, every autoencoder bit kept)."""
    algorithm: int = 0                   # 0 TS, 1 STC, 2 BC, 3 RPT, 4 AE
    high_density: bool = False
    n_etx: int = 2                       # active output links, 0..13 (0: every word 0)
    mux: tuple[int, ...] = tuple(range(N_TC))
    cal: tuple[int, ...] = (2048,) * N_TC
    threshold: tuple[int, ...] = (0,) * N_TC
    drop_lsb: int = 0
    buff_t1: int = 0x30
    buff_t2: int = 0x1FF
    buff_t3: int = 0
    stc_type: int = 1
    use_sum: bool = True
    tx_sync_word: int = 0x070F
    ae_mask: int = (1 << AE_MASK_BITS) - 1
    ae_weight_words: tuple[tuple[int, ...], ...] | None = field(default=None, repr=False)
    #: where input TC 4l+k sits in the word of link l: bits 7k.. (False, the older tools)
    #: or bits 7(3-k).. (True, the newer); see the module docstring
    erx_msb_first: bool = False

    @property
    def algorithm_name(self) -> str:
        return ALGORITHMS[self.algorithm]

    @property
    def effective_drop_lsb(self) -> int:
        """The ASIC treats DropLSB values above 4 as 0 (the 8-bit register holds up to 255)."""
        return self.drop_lsb if self.drop_lsb <= MAX_DROP_LSB else 0

    def with_links(self, n_etx: int) -> "AsicConfig":
        return replace(self, n_etx=n_etx)


def _int(value, where: str, bits: int, low: int = 0) -> int:
    if isinstance(value, bool) or value is None:
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if isinstance(value, str):
        try:
            value = int(value.strip(), 0)
        except ValueError:
            raise ConfigError(f"{where}: expected an integer, got {value!r}") from None
    if not isinstance(value, int):
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if not low <= value < (1 << bits):
        raise ConfigError(f"{where}: {value} is outside {low}..{(1 << bits) - 1} "
                          f"(a {bits}-bit register)")
    return value


def _section(doc: dict, name: str) -> dict | None:
    sec = doc.get(name)
    if sec is None:
        return None
    if not isinstance(sec, dict):
        raise ConfigError(f"{name}: expected a mapping of registers, got {sec!r}")
    return sec


def _global(doc: dict, name: str, known: set[str]) -> dict:
    sec = _section(doc, name)
    if sec is None:
        return {}
    extra = set(sec) - {"Global"}
    if extra:
        raise ConfigError(f"{name}: unknown key {sorted(map(str, extra))[0]!r} (expected Global)")
    glob = sec.get("Global")
    if not isinstance(glob, dict):
        raise ConfigError(f"{name}.Global: expected a mapping of registers, got {glob!r}")
    unknown = set(glob) - known
    if unknown:
        raise ConfigError(f"{name}.Global.{sorted(map(str, unknown))[0]}: unknown register "
                          f"(known: {', '.join(sorted(known))})")
    return glob


def _per_tc(doc: dict, name: str, bits: int, default: tuple[int, ...]) -> tuple[int, ...]:
    sec = _section(doc, name)
    if sec is None:
        return default
    keys = set(sec)
    bad = [k for k in keys if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k < N_TC]
    if bad:
        raise ConfigError(f"{name}.{bad[0]}: unknown register (expected TC indices 0..47)")
    missing = sorted(set(range(N_TC)) - keys)
    if missing:
        raise ConfigError(f"{name}.{missing[0]}: missing (all 48 TCs must be given)")
    return tuple(_int(sec[i], f"{name}.{i}", bits) for i in range(N_TC))


def _links(value, where: str, as_mask: bool) -> int:
    """Output links in use: a count (the older spelling; the 4-bit `eporttx_numen`) or a
    mask of links from eTx 0 (the newer). 0 links: the ASIC sends nothing, every output
    word is 0, as the CMS emulator gives. 14 or 15 fit the 4-bit register but name links
    the ASIC does not have, and the CMS emulator stops on them."""
    if as_mask:
        mask = _int(value, where, MAX_ETX)
        n = mask.bit_length()
        if mask != (1 << n) - 1:
            raise ConfigError(f"{where}: {value!r} is not a mask of contiguous links from "
                              f"eTx 0 (e.g. 0x7 for three links)")
        return n
    count = _int(value, where, REGISTER_BITS["eporttx_numen"])
    if count > MAX_ETX:
        raise ConfigError(f"{where}: {count} links; the ECON-T has 0..{MAX_ETX} (the CMS "
                          "emulator cannot run more)")
    return count


def _weights(doc: dict) -> tuple[tuple[int, ...], ...] | None:
    sec = _section(doc, "Encoder")
    if sec is None:
        return None
    blocks = []
    for b in range(AE_BLOCKS):
        block = sec.get(b)
        if not isinstance(block, dict):
            raise ConfigError(f"Encoder.{b}: missing (12 weight blocks 0..11 are expected)")
        unknown = set(block) - set(AE_WORD_BITS)
        if unknown:
            raise ConfigError(f"Encoder.{b}.{sorted(map(str, unknown))[0]}: unknown register")
        words = []
        for name, bits in AE_WORD_BITS.items():
            if name not in block:
                raise ConfigError(f"Encoder.{b}.{name}: missing")
            words.append(_int(block[name], f"Encoder.{b}.{name}", bits))
        blocks.append(tuple(words))
    extra = set(sec) - set(range(AE_BLOCKS))
    if extra:
        raise ConfigError(f"Encoder.{sorted(map(str, extra))[0]}: unknown block (0..11)")
    return tuple(blocks)


_FMT_KEYS = {"active_etxs", "buff_t1", "buff_t2", "buff_t3", "stc_type", "link_reset_pattern",
             "use_sum", "mask_ae", "mask_ae2", "keep_auto_encoder_bits"}


def parse_config(doc, source: str = "init.yaml") -> AsicConfig:
    """An `AsicConfig` from the parsed YAML of an `init.yaml` (either spelling)."""
    if not isinstance(doc, dict):
        raise ConfigError(f"{source}: expected a mapping of register sections")
    newer = "ConfigAlgo" in doc
    if newer and "Algorithm" in doc:
        raise ConfigError("ConfigAlgo: given together with Algorithm (use one spelling)")
    if newer:
        algo = _global(doc, "ConfigAlgo", {"alg_type", "alg_high_density"})
        sel_key, dens_key, where = "alg_type", "alg_high_density", "ConfigAlgo.Global"
    else:
        algo = _global(doc, "Algorithm", {"select", "density"})
        sel_key, dens_key, where = "select", "density", "Algorithm.Global"
    algorithm = _int(algo.get(sel_key, AsicConfig.algorithm), f"{where}.{sel_key}",
                     REGISTER_BITS["select"])
    if algorithm not in ALGORITHMS:
        raise ConfigError(f"{where}.{sel_key}: {algorithm} is not an algorithm "
                          f"({', '.join(f'{k} {v}' for k, v in ALGORITHMS.items())})")
    density = _int(algo.get(dens_key, int(AsicConfig.high_density)), f"{where}.{dens_key}",
                   REGISTER_BITS["density"])

    drop = 0
    sec = _section(doc, "AlgoDroplsb")
    if sec is not None:
        extra = set(sec) - {"Global"}
        if extra:
            raise ConfigError(f"AlgoDroplsb: unknown key {sorted(map(str, extra))[0]!r}")
        glob = sec.get("Global")
        if isinstance(glob, dict):
            unknown = set(glob) - {"drop_lsb"}
            if unknown:
                raise ConfigError(f"AlgoDroplsb.Global.{sorted(map(str, unknown))[0]}: "
                                  "unknown register (known: drop_lsb)")
            drop = _int(glob.get("drop_lsb", 0), "AlgoDroplsb.Global.drop_lsb",
                        REGISTER_BITS["drop_lsb"])
        else:
            drop = _int(glob, "AlgoDroplsb.Global", REGISTER_BITS["drop_lsb"])

    fmt = _global(doc, "FormatterBuffer", _FMT_KEYS)
    kw = {}
    if "active_etxs" in fmt:
        kw["n_etx"] = _links(fmt["active_etxs"], "FormatterBuffer.Global.active_etxs", newer)
    for name in ("buff_t1", "buff_t2", "buff_t3"):
        if name in fmt:
            kw[name] = _int(fmt[name], f"FormatterBuffer.Global.{name}", REGISTER_BITS[name])
    if "stc_type" in fmt:
        kw["stc_type"] = _int(fmt["stc_type"], "FormatterBuffer.Global.stc_type",
                              REGISTER_BITS["stc_type"])
        if kw["stc_type"] not in STC_TYPES:
            raise ConfigError(f"FormatterBuffer.Global.stc_type: {kw['stc_type']} is not a "
                              f"type (0..{max(STC_TYPES)}; the CMS emulator formats no other)")
    if "use_sum" in fmt:
        kw["use_sum"] = bool(_int(fmt["use_sum"], "FormatterBuffer.Global.use_sum",
                                  REGISTER_BITS["use_sum"]))
    if "link_reset_pattern" in fmt:
        kw["tx_sync_word"] = _int(fmt["link_reset_pattern"],
                                  "FormatterBuffer.Global.link_reset_pattern",
                                  REGISTER_BITS["tx_sync_word"])
    if "keep_auto_encoder_bits" in fmt:
        if "mask_ae" in fmt or "mask_ae2" in fmt:
            raise ConfigError("FormatterBuffer.Global.keep_auto_encoder_bits: given together "
                              "with mask_ae/mask_ae2 (use one spelling)")
        kw["ae_mask"] = _int(fmt["keep_auto_encoder_bits"],
                             "FormatterBuffer.Global.keep_auto_encoder_bits", AE_MASK_BITS)
    elif "mask_ae" in fmt or "mask_ae2" in fmt:
        high = _int(fmt.get("mask_ae", (1 << 128) - 1), "FormatterBuffer.Global.mask_ae",
                    REGISTER_BITS["mask_ae"])
        low = _int(fmt.get("mask_ae2", (1 << 16) - 1), "FormatterBuffer.Global.mask_ae2",
                   REGISTER_BITS["mask_ae2"])
        kw["ae_mask"] = (high << 16) | low

    cfg = AsicConfig(
        algorithm=algorithm, high_density=bool(density), drop_lsb=drop,
        mux=_per_tc(doc, "Mux", REGISTER_BITS["mux"], AsicConfig.mux),
        cal=_per_tc(doc, "Cal", REGISTER_BITS["cal"], AsicConfig.cal),
        threshold=_per_tc(doc, "AlgoThreshold", REGISTER_BITS["threshold"], AsicConfig.threshold),
        ae_weight_words=_weights(doc), erx_msb_first=newer, **kw)
    bad_mux = [i for i, m in enumerate(cfg.mux) if m >= N_TC]
    if bad_mux:
        raise ConfigError(f"Mux.{bad_mux[0]}: {cfg.mux[bad_mux[0]]} selects no input TC (the "
                          "6-bit register holds it, but there are 48 inputs, 0..47, and the CMS "
                          "emulator cannot run it)")
    if cfg.algorithm == 4 and cfg.ae_weight_words is None:
        raise ConfigError("Encoder: missing (the autoencoder needs its 12 weight blocks)")
    _warn_repeated_mux(cfg.mux, source)
    return cfg


def _warn_repeated_mux(mux: tuple[int, ...], source: str) -> None:
    """A MUX that routes one input to two slots is legal register content (the ASIC and
    the CMS emulator copy the input, and the unselected inputs are never read), so it is
    emulated as written; it is almost always a mistake, so it is said once."""
    seen: dict[int, int] = {}
    for slot, chosen in enumerate(mux):
        if chosen in seen:
            unread = sorted(set(range(N_TC)) - set(mux))
            log.warning("%s: Mux.%d and Mux.%d both select input %d; input%s %s never read",
                        source, seen[chosen], slot, chosen, "s" if len(unread) > 1 else "",
                        ", ".join(map(str, unread)))
            return
        seen[chosen] = slot


class _Loader(BoundedSafeLoader):
    """SafeLoader with the product's bounds on what aliases expand to
    (`base.yamlload`); a duplicated key keeps its last value, as the CMS tools read it."""


def load_config(path: str | Path) -> AsicConfig:
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such configuration file") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a configuration file") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text (UTF-8) YAML file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    try:
        doc = yaml.load(text, Loader=_Loader)
    except YamlTooLarge as exc:
        raise ConfigError(f"{path}: {exc}; a configuration holds a few hundred values") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise ConfigError(f"{path}: not valid YAML{where}") from None
    if doc is None:
        raise ConfigError(f"{path}: empty configuration file")
    try:
        return parse_config(doc, str(path))
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


_WORD_ORDER = ["weights_byte128"] + [f"weights_byte{16 * i}" for i in reversed(range(8))]
_BLOCK_BITS = sum(AE_WORD_BITS.values())          # 1,072
AE_WEIGHTS = AE_BLOCKS * _BLOCK_BITS // 6          # 2,144 six-bit weights


def ae_register_values(words: tuple[tuple[int, ...], ...]) -> np.ndarray:
    """The 2,144 signed six-bit encoder weights (-32..31, units of 1/32) of the register
    image, in register order (`econt.autoencoder` says what each one is).

    The blocks are concatenated from block 11 down to 0, each as its 48-bit word followed
    by the 128-bit words from byte112 down to byte0; read in 6-bit two's-complement groups
    from the least significant end, the bit string lists the weights first to last."""
    names = list(AE_WORD_BITS)
    bits = 0
    for block in reversed(range(AE_BLOCKS)):
        regs = dict(zip(names, words[block]))
        for name in _WORD_ORDER:
            bits = (bits << AE_WORD_BITS[name]) | regs[name]
    raw = np.array([(bits >> (6 * k)) & 0x3F for k in range(AE_WEIGHTS)], dtype=np.int64)
    return np.where(raw >= 32, raw - 64, raw)


def ae_register_words(values) -> tuple[tuple[int, ...], ...]:
    """The 12 register blocks holding `values` (the inverse of `ae_register_values`)."""
    v = np.asarray(values, dtype=np.int64)
    if v.shape != (AE_WEIGHTS,) or v.min() < -32 or v.max() > 31:
        raise ValueError(f"expected {AE_WEIGHTS} signed six-bit weights")
    bits = 0
    for k in reversed(range(AE_WEIGHTS)):
        bits = (bits << 6) | int(v[k] & 0x3F)
    blocks = []
    for block in range(AE_BLOCKS):
        chunk = (bits >> (_BLOCK_BITS * block)) & ((1 << _BLOCK_BITS) - 1)
        regs, shift = {}, 0
        for name in reversed(_WORD_ORDER):
            regs[name] = (chunk >> shift) & ((1 << AE_WORD_BITS[name]) - 1)
            shift += AE_WORD_BITS[name]
        blocks.append(tuple(regs[n] for n in AE_WORD_BITS))
    return tuple(blocks)
