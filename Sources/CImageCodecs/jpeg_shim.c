#include "CImageCodecs.h"
#include <setjmp.h>
#include <string.h>

/* libjpeg's error manager extended with the jump target and the first warning. */
struct mcl_jpeg_error {
    struct jpeg_error_mgr base;
    jmp_buf jump;
    char *message;
    int warned;
};

static void mcl_error_exit(j_common_ptr c) {
    struct mcl_jpeg_error *e = (struct mcl_jpeg_error *)c->err;
    (*c->err->format_message)(c, e->message);
    longjmp(e->jump, 1);
}

static void mcl_emit_message(j_common_ptr c, int level) {
    struct mcl_jpeg_error *e = (struct mcl_jpeg_error *)c->err;
    if (level < 0 && !e->warned) {   /* level -1: a warning (corrupt data); >= 0: trace output */
        (*c->err->format_message)(c, e->message);
        e->warned = 1;
    }
}

static void setup(struct jpeg_decompress_struct *cinfo, struct mcl_jpeg_error *err, char *message) {
    memset(cinfo, 0, sizeof *cinfo);
    cinfo->err = jpeg_std_error(&err->base);
    err->base.error_exit = mcl_error_exit;
    err->base.emit_message = mcl_emit_message;
    err->message = message;
    err->warned = 0;
    message[0] = 0;
}

/* Both entry points repeat the setjmp / create / source / header sequence on purpose: setjmp must
 * be called in the frame that calls libjpeg (a longjmp into a frame that has returned is
 * undefined), so it cannot move into a shared helper. */
int mcl_jpeg_read_size(const unsigned char *data, size_t size, int *width, int *height, char *message) {
    struct jpeg_decompress_struct cinfo;
    struct mcl_jpeg_error err;
    setup(&cinfo, &err, message);
    if (setjmp(err.jump)) {
        jpeg_destroy_decompress(&cinfo);
        return MCL_JPEG_FATAL;
    }
    jpeg_create_decompress(&cinfo);
    jpeg_mem_src(&cinfo, data, (unsigned long)size);
    jpeg_read_header(&cinfo, TRUE);
    *width = (int)cinfo.image_width;
    *height = (int)cinfo.image_height;
    jpeg_destroy_decompress(&cinfo);
    return err.warned ? MCL_JPEG_CORRUPT : MCL_JPEG_OK;
}

int mcl_jpeg_decode_rgb(const unsigned char *data, size_t size, int width, int height,
                        unsigned char *rgb, char *message) {
    struct jpeg_decompress_struct cinfo;
    struct mcl_jpeg_error err;
    setup(&cinfo, &err, message);
    if (setjmp(err.jump)) {
        jpeg_destroy_decompress(&cinfo);
        return MCL_JPEG_FATAL;
    }
    jpeg_create_decompress(&cinfo);
    jpeg_mem_src(&cinfo, data, (unsigned long)size);
    jpeg_read_header(&cinfo, TRUE);
    if ((int)cinfo.image_width != width || (int)cinfo.image_height != height) {
        jpeg_destroy_decompress(&cinfo);
        return MCL_JPEG_SIZE;
    }
    cinfo.out_color_space = JCS_RGB;
    jpeg_start_decompress(&cinfo);
    if ((int)cinfo.output_width != width || (int)cinfo.output_height != height || cinfo.output_components != 3) {
        jpeg_destroy_decompress(&cinfo);
        return MCL_JPEG_SIZE;
    }
    while (cinfo.output_scanline < cinfo.output_height) {
        JSAMPROW row = rgb + (size_t)cinfo.output_scanline * (size_t)width * 3;
        jpeg_read_scanlines(&cinfo, &row, 1);
    }
    jpeg_finish_decompress(&cinfo);
    jpeg_destroy_decompress(&cinfo);
    return err.warned ? MCL_JPEG_CORRUPT : MCL_JPEG_OK;
}
