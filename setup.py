"""slime-openclaw: train any agent from its live traffic, as a plugin to upstream slime."""

from setuptools import find_packages, setup

setup(
    name="slime-openclaw",
    version="0.1.0",
    description="Online RL and hindsight on-policy distillation from live agent traffic, as a slime plugin.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["slime_openclaw", "slime_openclaw.*"]),
    include_package_data=True,
    package_data={"slime_openclaw": ["py.typed"]},
    install_requires=[
        # torch is pinned and installed first by the Makefile (a bare requirement would
        # pull CUDA wheels on a CPU machine). Ranges are what is tested: torch 2.13 (CI) down
        # to 2.11 (what slime's SGLang pin installs); transformers 5.24 (CI) and 5.12.1
        # (SGLang's pin; the engine's KV-cache keyword differs, engine/kv.py).
        "torch>=2.11,<2.14",
        "aiohttp>=3.9",
        "omegaconf>=2.3",
        "pyyaml>=6",
        "transformers>=5.12.1,<6",
        "tokenizers>=0.22,<0.24",
        "safetensors>=0.4",
        "numpy>=1.26",
        "orjson>=3.9",
    ],
    extras_require={
        "test": [
            "pytest>=8",
            "pytest-asyncio>=0.23",
            "openai>=1.40",
            "ruff>=0.6",
            "mypy>=1.10",
            "matplotlib>=3.8",
            # a real agent harness for the stock-client tests (pulls litellm; no torch)
            "mini-swe-agent>=2.4,<3",
            # the gui environment (its tests run in CI)
            "playwright>=1.45", "miniwob>=1.0",
            "hypothesis>=6.100",
            # serve's default event loop when installed (the tests cover it and asyncio's)
            "uvloop>=0.19; sys_platform != 'win32'",
            # the Ray environment pool (its tests start a local Ray on 127.0.0.1)
            "ray>=2.40",
        ],
        # the gateway's faster event loop (serve --event-loop auto takes it when installed)
        "fast": ["uvloop>=0.19; sys_platform != 'win32'"],
        # the gui environment: Playwright drives Debian's /usr/bin/chromium; MiniWoB++ pages
        "gui": ["playwright>=1.45", "miniwob>=1.0"],
        "demo": ["openai>=1.40", "matplotlib>=3.8"],
        # openclaw_env_pool: ray (environments on Ray actors; slime's cluster already has it)
        "ray": ["ray>=2.40"],
        # The cluster path; never installed in CI. The versions slime 624b824a runs with
        # (its docker/Dockerfile). Not here: slime itself (git; the PyPI name "slime" is an
        # unrelated project) and Megatron-LM, which slime needs at commit 1dcf0daf with its
        # docker/patch/latest/megatron*.patch applied (PyPI megatron-core is not that):
        # README "Install" says how.
        "gpu": ["sglang==0.5.15.post1", "transformer_engine[pytorch]==2.16.1"],
    },
    entry_points={"console_scripts": ["slime-openclaw=slime_openclaw.cli:main"]},
)
