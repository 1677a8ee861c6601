"""Analysis records; the statistics core in stats/ is pure numpy/scipy."""
