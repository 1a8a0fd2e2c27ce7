"""Triton kernels of vjepa_fast, one op per module (installed as `vjepa_fast.kernels`).

Set TRITON_INTERPRET=1 before importing a kernel module to run the kernels on the CPU.
"""
