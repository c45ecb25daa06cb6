// Carries stb_image (Debian's libstb-dev) inside this header-only library.
// STB_IMAGE_STATIC makes every symbol internal to the including translation
// unit, so a user's own copy of stb_image never clashes with ours.
#pragma once
#ifndef MINICNN_STB_IMAGE_INCLUDED
#define MINICNN_STB_IMAGE_INCLUDED
#define STB_IMAGE_STATIC
#define STB_IMAGE_IMPLEMENTATION
#define STBI_NO_STDIO
#define STBI_FAILURE_USERMSG
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wsign-compare"
#endif
#include <stb/stb_image.h>
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif
#undef STB_IMAGE_IMPLEMENTATION
#endif
