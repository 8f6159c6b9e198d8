from setuptools import find_packages, setup

setup(
    name="hpe",
    version="0.1.0",
    description="Hand pose estimation with ConvNets on RGB-D data (Kazakos 2017), reproduced in PyTorch",
    long_description=open("README.rst", encoding="utf-8").read(),
    long_description_content_type="text/x-rst",
    packages=find_packages(include=["hpe", "hpe.*", "data_prep"]),
    python_requires=">=3.10",
    install_requires=["torch>=2.1", "numpy", "scipy", "h5py", "matplotlib", "Pillow", "tqdm", "optuna"],
    extras_require={"test": ["pytest", "psycopg2-binary"], "postgres": ["psycopg2-binary"]},
    entry_points={"console_scripts": ["hpe=hpe.cli:main"]},
)
