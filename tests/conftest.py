"""Shared test set-up: headless matplotlib, and a fixed number of threads so timings-free tests stay quick."""
import matplotlib

matplotlib.use("Agg")
