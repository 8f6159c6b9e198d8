"""Scripts that build datasets: the synthetic NYU-format generator (Make chains them to HDF5 via ``hpe prep``)."""
