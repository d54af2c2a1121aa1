/* SPDX-License-Identifier: Apache-2.0 */
/* kiln-import's image mode: oci:DIR, an OCI image layout opened file by file as the caller
 * (image-private.h). */

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "image-private.h"
#include "base/kiln-common.h"
#include "layer-digest.h"
#include "records.h"

/* ---- oci:DIR ---- */

static int layout_layer(Image *im, guint i, const char *blob_hex, gint64 size, const char *diff_hex)
{
        g_autofree char *name = g_strconcat("blobs/sha256/", blob_hex, NULL);
        _cleanup_close_ int fd = image_open_in_layout(im, name);
        g_autofree char *fingerprint = NULL;
        BlobReader r;
        int ret;

        if (fd < 0)
                return -1;
        fingerprint = kiln_import_fd_fingerprint(fd, "blob", blob_hex);
        if (fingerprint && image_layer_exists(im, diff_hex)) {
                g_autofree char *known = kiln_import_read_record(im->layers_fd, KILN_IMPORT_FINGERPRINTS_DIR,
                                                                 fingerprint, KILN_LAYER_DIGEST_LENGTH + 1);
                if (known && strlen(known) == KILN_LAYER_DIGEST_LENGTH + 1 &&
                    strncmp(known, diff_hex, KILN_LAYER_DIGEST_LENGTH) == 0) {
                        /* This very file was read and verified before: its blob digest and diff_id
                         * are the ones asked for, and the layer is stored. */
                        g_ptr_array_add(im->layer_hex, g_strdup(diff_hex));
                        g_ptr_array_add(im->layer_tmp, NULL);
                        im->progress.bytes += size > 0 ? (uint64_t)size : 0;
                        return 0;
                }
        }
        image_blob_reader_init(&r, im);
        r.fd = fd;
        r.counts = true;
        if (size >= 0)
                r.max = (uint64_t)size;
        ret = image_take_layer(im, i, &r, blob_hex, diff_hex);
        /* Recorded once the whole image is in: a refused image leaves nothing. */
        if (ret == 0 && fingerprint)
                g_ptr_array_add(im->records, g_strdup_printf("%s %s\n", fingerprint, diff_hex));
        if (ret == 0 && size >= 0 && r.n != (uint64_t)size)
                ret = image_fail(im, KILN_IMPORT_EXIT_INVALID,
                                 "layer %u: %" PRIu64 " bytes, its descriptor says %" G_GINT64_FORMAT, i,
                                 r.n, size);
        image_blob_reader_clear(&r);
        return ret;
}

int image_read_layout(Image *im)
{
        g_autoptr(GBytes) index = NULL;
        _cleanup_close_ int fd = -1;
        BlobReader r;
        char hex[65];

        /* oci-layout says what this is; its version is not checked (1.0.0 is the only one). */
        fd = image_open_in_layout(im, "oci-layout");
        if (fd < 0)
                return -1;
        kiln_close_fdp(&fd);
        fd = image_open_in_layout(im, "index.json");
        if (fd < 0)
                return -1;
        image_blob_reader_init(&r, im);
        r.fd = fd;
        index = image_read_small(im, &r, JSON_MAX, "index.json", hex);
        image_blob_reader_clear(&r);
        if (!index)
                return -1;
        return image_read_oci(im, index, layout_layer);
}
