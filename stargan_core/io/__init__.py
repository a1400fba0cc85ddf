"""The bottom of the data stack: file formats, read and written without any data set around
them. `images` decodes every input photo and encodes every output (the input rule), `parquet`
writes and reads our Parquet shards (a JSON record in the footer, atomic publishing), `celeba`
reads CelebA's own layout (and holds its aligned faces' geometry), `sample` is one image of a
data set with its raw labels. The data sets (`stargan_core.data`) and the preprocessing
contract (`stargan_core.preprocessing`) are built on them; nothing here imports either.
"""
