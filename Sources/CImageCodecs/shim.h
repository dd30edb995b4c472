#ifndef MCL_CIMAGECODECS_SHIM_H
#define MCL_CIMAGECODECS_SHIM_H
#include <stdio.h>
#include <jpeglib.h>
#include <png.h>
#include <zlib.h>
#endif
