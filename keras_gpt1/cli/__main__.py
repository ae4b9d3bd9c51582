"""`python -m keras_gpt1.cli`: the `keras-gpt1` command."""

import sys

from keras_gpt1.cli.main import main

sys.exit(main())
