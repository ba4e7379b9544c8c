"""sam3_tvm: compile Meta's SAM 3 with Apache TVM into a bundle the C++ runtime loads."""

__version__ = "0.1.0"

# The bundle format this compiler writes; the runtime refuses other versions.
BUNDLE_SCHEMA_VERSION = 3  # 2: video tracker components and the `tracker` block; 3: `sha256`
