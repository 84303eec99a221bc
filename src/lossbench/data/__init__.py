"""lossbench.data: real datasets in their standard formats, as in-memory tensors.

``load_dataset(name, data_dir=None, **params)`` returns a ``Dataset`` (train/test tensors and
metadata); ``DATASETS`` lists every registered dataset and format (``lossbench datasets``).
Built-in sets need no files; real sets are read from ``<data_dir>/<subdir>/`` and downloaded
there when absent; format loaders (IDX, image folders, TSV/CSV text, text folders, fastText and
TREC lines, ARFF, MEKA ARFF, UCI
Adult, CSV/TSV/whitespace/Excel tables) take explicit paths for your own data.  Parsed files
are cached (see ``_cache``).

The loaders need numpy, scikit-learn and Pillow (the ``data`` extra), ``load_table`` and the
``uci-*`` sets pandas too (and openpyxl / xlrd for Excel files); they import them only when
called, so ``import lossbench.data`` needs torch alone.
"""

from lossbench.data import catalog as _catalog  # noqa: F401  (registers every dataset)
from lossbench.data._dataset import PAD_ID, Dataset, check_test_labels, class_counts
from lossbench.data._files import (
    CACHE_DIR_ENV,
    DATA_DIR_ENV,
    DataUnavailableError,
    RemoteFile,
    default_cache_dir,
    default_data_dir,
)
from lossbench.data._registry import DATASETS, DatasetInfo, get_dataset_info, load_dataset, register_dataset
from lossbench.data.adult import load_adult
from lossbench.data.arff import load_arff, load_meka_arff, parse_arff
from lossbench.data.builtin import load_sklearn, load_synthetic, load_synthetic_multilabel
from lossbench.data.idx import load_idx, load_idx_dir, read_idx
from lossbench.data.image_folder import load_image_folder
from lossbench.data.splits import (
    DEFAULT_TEST_FRACTION,
    iterate_minibatches,
    long_tail,
    long_tail_counts,
    standardize,
    stratified_split,
)
from lossbench.data.table import content_digest, load_table
from lossbench.data.text import load_text_table, tokenize
from lossbench.data.text_bags import TokenBags
from lossbench.data.text_folder import load_text_folder
from lossbench.data.text_lines import load_fasttext_file, load_trec_file

__all__ = [
    "DATASETS",
    "DatasetInfo",
    "Dataset",
    "PAD_ID",
    "class_counts",
    "check_test_labels",
    "load_dataset",
    "get_dataset_info",
    "register_dataset",
    "stratified_split",
    "long_tail",
    "long_tail_counts",
    "iterate_minibatches",
    "standardize",
    "DEFAULT_TEST_FRACTION",
    "load_idx",
    "load_idx_dir",
    "read_idx",
    "load_image_folder",
    "load_text_table",
    "load_text_folder",
    "load_fasttext_file",
    "load_trec_file",
    "TokenBags",
    "tokenize",
    "load_arff",
    "load_meka_arff",
    "parse_arff",
    "load_adult",
    "load_table",
    "content_digest",
    "load_sklearn",
    "load_synthetic",
    "load_synthetic_multilabel",
    "RemoteFile",
    "DataUnavailableError",
    "default_data_dir",
    "default_cache_dir",
    "DATA_DIR_ENV",
    "CACHE_DIR_ENV",
]
