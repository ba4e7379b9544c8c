// Anchors the sam3_core library even before other sources exist.
#include "sam3/error.h"
