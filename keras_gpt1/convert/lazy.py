"""Checkpoint tensors read one at a time, when the model needs them.

A converter holds the whole model once, in its variables. Reading a checkpoint whole first (or
mapping it into memory and touching every page) would hold it a second time; building the model
with random weights first, then reading everything, a third. Readers therefore return
`LazyTensor`s: the shape is known from the file's header (enough to check a checkpoint against
the architecture before any data is read), and the data is read only when the tensor is turned
into an array (`np.asarray(tensor)`), assigned to its variable, and dropped. At most one tensor
is in flight beside the model.

Example:
```python
tensor = LazyTensor((3, 4), lambda: np.zeros((3, 4), "float32"), "zeros")
tensor.shape           # (3, 4), nothing read yet
np.asarray(tensor)     # reads it now
```
"""

import numpy as np


class LazyTensor:
    """A tensor in a file: `shape` now, the data when converted with `np.asarray`.

    `read()` returns the array (a fresh one each call, owned by the caller); `source` names the
    tensor and its file in error messages and in `repr`.
    """

    def __init__(self, shape, read, source="tensor"):
        self.shape = tuple(int(s) for s in shape)
        self._read = read
        self.source = source

    @property
    def ndim(self):
        return len(self.shape)

    def read(self):
        array = np.asarray(self._read())
        if array.shape != self.shape:
            raise ValueError(
                f"{self.source}: the data holds shape {list(array.shape)} but the header says "
                f"{list(self.shape)}: the file is corrupt."
            )
        return array

    def __array__(self, dtype=None, copy=None):
        array = self.read()
        return array if dtype is None else array.astype(dtype, copy=False)

    def __repr__(self):
        return f"LazyTensor(shape={list(self.shape)}, {self.source})"
