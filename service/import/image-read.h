/* SPDX-License-Identifier: Apache-2.0 */
/* kiln-import's image mode: an OCI image layout (oci:DIR), an OCI archive (oci-archive:FILE) or a
 * docker-archive (docker-archive:FILE), read as the caller, its layers verified and stored once each
 * as STATE/layers/<diff_id hex>.
 *
 *   kiln-import --image oci|oci-archive|docker-archive --uid U --gid G [--groups G1,...]
 *               --layers STATE/layers (--path ABS | --fd N) [--ref REF] [--platform OS/ARCH[/VARIANT]]
 *               [--max-bytes N] [--max-layers N] [--max-entries N] [--parent-pid P]
 *
 * On success it prints one JSON object on stdout:
 *   {"digest": "sha256:…" (the manifest's, or the config's for a docker-archive),
 *    "layers": ["<diff_id hex>", …] (bottom first), "config": {…the image config's "config"…},
 *    "history": […], "os": "…", "architecture": "…"}
 * and exits 0; otherwise one line on stderr and a KILN_IMPORT_EXIT_* code (layer-digest.h). */
#pragma once

#include <glib.h>

#include "layer-tar.h"

/* Runs the image mode; argv as kiln-import got it (argv[1] is "--image"). Returns the exit code. */
int kiln_image_main(int argc, char **argv);

/* The lowercase hex SHA-256 of a layer's uncompressed tar stream (its diff_id), read through @read to
 * the end without unpacking anything: for a layer stored already, which only a caller who holds its
 * bytes may use. FALSE with @error on a read or decompression failure. */
gboolean kiln_image_hash_layer(KilnLayerReadFunc read, void *data, char diff_hex[65], GError **error);
