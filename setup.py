"""ament_python setup for rnn_perception (colcon build, or pip install -e . in the local venv)."""
from glob import glob

from setuptools import find_packages, setup

PACKAGE = 'rnn_perception'

setup(
    name=PACKAGE,
    version='0.1.0',
    packages=find_packages(include=[PACKAGE, f'{PACKAGE}.*']),
    # the shipped default models travel inside the Python package
    package_data={
        f'{PACKAGE}.models': ['default/*.safetensors', 'default/*.onnx', 'default/*.json']},
    data_files=[
        ('share/ament_index/resource_index/packages', [f'resource/{PACKAGE}']),
        (f'share/{PACKAGE}', ['package.xml']),
        (f'share/{PACKAGE}/launch', glob('launch/*.launch.py')),
        (f'share/{PACKAGE}/config', glob('config/*.yaml')),
    ],
    install_requires=['setuptools'],
    zip_safe=True,
    maintainer='rnn_perception maintainers',
    maintainer_email='maintainers@rnn-perception.invalid',
    description='Recurrent perception for robots: ConvLSTM collision and LSTM tactile-pose '
    'predictors',
    license='Apache-2.0',
    entry_points={
        'console_scripts': [
            # ROS executables (`ros2 run rnn_perception <name>`).
            f'collision_node = {PACKAGE}.nodes.collision_node:main',
            f'tactile_node = {PACKAGE}.nodes.tactile_node:main',
            f'zoo = {PACKAGE}.training.zoo:main',
            f'rnn_perception = {PACKAGE}.commands:main',
        ],
    },
)
