#ifndef MCL_CIMAGECODECS_H
#define MCL_CIMAGECODECS_H
/* The system image and compression libraries mcl-dist uses (libjpeg-turbo, libpng, zlib), and
 * one C shim: JPEG decoding with libjpeg's fatal errors caught by setjmp/longjmp inside C.
 * libjpeg reports a fatal error by calling `error_exit`, which must not return; the only safe
 * way out is a longjmp to a frame in C code that called libjpeg, never across Swift frames. */
#include <stddef.h>
#include <stdio.h>
#include <jpeglib.h>
#include <png.h>
#include <zlib.h>

/* Room for libjpeg's messages (JMSG_LENGTH_MAX is 200). */
#define MCL_JPEG_MESSAGE_LENGTH 256

/* Result codes of the JPEG shim. */
enum {
    MCL_JPEG_OK = 0,
    MCL_JPEG_FATAL = 1,     /* libjpeg's error_exit: the data cannot be decoded */
    MCL_JPEG_CORRUPT = 2,   /* decoded, but libjpeg warned (corrupt or truncated data) */
    MCL_JPEG_SIZE = 3,      /* the image's size differs from the one asked for */
};

/* Reads the header of an in-memory JPEG: its width and height. */
int mcl_jpeg_read_size(const unsigned char *data, size_t size, int *width, int *height, char *message);

/* Decodes an in-memory JPEG of exactly `width` x `height` pixels to 8-bit RGB, interleaved, into
 * `rgb` (3 * width * height bytes). A warning (e.g. "Premature end of JPEG file") is reported as
 * MCL_JPEG_CORRUPT with its message, so a grey-filled image never passes as data. */
int mcl_jpeg_decode_rgb(const unsigned char *data, size_t size, int width, int height,
                        unsigned char *rgb, char *message);
#endif
