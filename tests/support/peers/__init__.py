"""Simulated SilverLine peers of every generation, speaking exactly their wire formats.

Written from reading the real software (never copied from it):
libsilverline 2ce39d4 (2022-07), 4a8ade3 (2022-09), 9c12d5a (2023);
runtime-manager e79a41b (2023: libsilverline/, manager/, runtimes/linux_minimal.py,
tools/); arena-runtime-simulated e989d84 (2021). Each builds the messages its
original sends and reads replies the way its original does, so a test can
drive a generation step by step over a real broker.
"""
