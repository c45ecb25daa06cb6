// Empty translation unit that owns the tests' precompiled header (see CMakeLists.txt).
