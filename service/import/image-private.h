/* SPDX-License-Identifier: Apache-2.0 */
/* The image mode's parts (image-read.h), shared by image-*.c of kiln-import only: the options, the
 * state of one import and the functions each part gives the others.
 *   image-read.c      options, main, the result printed for kilnd, failures
 *   image-source.c    what the caller gives: the reader child (opens as the caller), blobs read and hashed
 *   image-layer.c     layer trees under STATE/layers: unpacked, verified, published; records
 *   image-manifest.c  digests, JSON, platforms, an OCI index → manifest → config → layers
 *   image-layout.c    oci:DIR
 *   image-archive.c   oci-archive: and docker-archive: */
#pragma once

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <archive.h>
#include <glib.h>
#include <json-glib/json-glib.h>

#include "layer-digest.h"

#define JSON_MAX (4 * 1024 * 1024)         /* one index.json, manifest, config or manifest.json */
#define SMALL_BLOB_MAX (1024 * 1024)       /* archive entries up to this size are kept in memory */
#define SMALL_TOTAL_MAX (64 * 1024 * 1024) /* all of them together */
#define ARCHIVE_LARGE_MAX 4096             /* entries unpacked as layers while an archive streams */
#define READ_BUFFER_SIZE (1024 * 1024)
#define INDEX_DEPTH_MAX 2              /* an index naming an index naming a manifest */
#define ARCHIVE_RECORD_MAX (64 * 1024) /* a result past it is not recorded */

extern volatile sig_atomic_t image_terminating;

typedef struct ImageOptions {
        uid_t uid;
        gid_t gid;
        gid_t *groups;
        size_t n_groups;
        const char *kind; /* oci, oci-archive, docker-archive */
        const char *layers;
        const char *path;
        int fd;
        const char *ref;
        char *os, *arch, *variant; /* the platform wanted */
        const char *platform_arg;  /* --platform as given, NULL: the host's */
        uint64_t max_bytes;        /* all layers together; UINT64_MAX: none */
        uint64_t max_layers;
        uint64_t max_entries;
        pid_t parent_pid;
        int progress_fd; /* -1: none */
        bool have_uid, have_gid;
} ImageOptions;

/* A layer tree being written, not yet published. */
typedef struct Tmp {
        char name[32];
        int fd;
        int lock_fd;
        char diff_hex[65]; /* what its tar stream hashed to */
        uint64_t bytes;
} Tmp;

/* An archive entry kept in memory. */
typedef struct Small {
        GBytes *data;
        char hex[65];
} Small;

/* An archive entry unpacked as a layer while the archive streamed. */
typedef struct Large {
        Tmp *tmp;          /* NULL if unpacking failed */
        char blob_hex[65]; /* the entry's bytes */
        char *error;       /* why it could not be unpacked; reported only if the image needs it */
        int error_code;
} Large;

typedef struct Image {
        const ImageOptions *o;
        int layers_fd;
        int sock;
        pid_t child;
        int root_fd;       /* the source as the reader opened it */
        uint64_t bytes;    /* file content unpacked so far */
        GPtrArray *tmps;   /* Tmp *, removed at the end unless published */
        GHashTable *small; /* archive path → Small */
        GHashTable *large; /* archive path → Large */
        uint64_t small_total;
        uint8_t *buffer;
        int exit_code;
        char *error;
        /* The result. */
        char *digest;
        GPtrArray *layer_hex; /* diff_id hex, bottom first */
        GPtrArray *layer_tmp; /* Tmp * or NULL (stored already), parallel to layer_hex */
        GPtrArray *records;   /* "FINGERPRINT DIFF_ID\n" of layout blobs verified, written at the end */
        JsonNode *config;     /* the image config document */
        KilnImportProgress progress; /* as last counted, sent at most every KILN_IMPORT_PROGRESS_MS */
        gint64 progress_sent;        /* monotonic µs */
} Image;

/* Reads one blob from a descriptor or an archive entry or memory, hashing every byte. */
typedef struct BlobReader {
        Image *im;
        int fd;
        struct archive *archive;
        bool is_mem;
        const uint8_t *mem;
        size_t mem_len;
        GChecksum *sha;
        uint64_t n;
        bool counts;  /* a layer's bytes: counted in the progress */
        uint64_t max; /* fail past it (a descriptor's size from the manifest); UINT64_MAX: none */
        int error;
} BlobReader;

/* An OCI index → manifest → config, then every layer through @layer (layout or archive). */
typedef int (*LayerFunc)(Image *im, guint i, const char *blob_hex, gint64 size, const char *diff_hex);

/* image-read.c */
int image_fail(Image *im, int code, const char *format, ...) G_GNUC_PRINTF(3, 4);
int image_fail_errno(Image *im, int e, const char *what, const char *path);
int image_fail_gerror(Image *im, const GError *error, const char *prefix);
void image_progress(Image *im, bool now);

/* image-source.c */
int image_reader_receive(Image *im, const char *display);
int image_start_reader(Image *im);
int image_check_file(Image *im, int fd, const char *display);
int image_open_in_layout(Image *im, const char *name);
ssize_t image_blob_read(void *data, const void **buf);
int image_blob_drain(BlobReader *r);
void image_blob_reader_init(BlobReader *r, Image *im);
void image_blob_reader_clear(BlobReader *r);
GBytes *image_read_small(Image *im, BlobReader *r, uint64_t max, const char *what, char hex[65]);

/* image-layer.c */
void image_tmp_free(Tmp *t);
void image_remove_tmps(Image *im);
bool image_layer_exists(Image *im, const char *hex);
Tmp *image_unpack_layer(Image *im, BlobReader *r, const char *what);
int image_check_layer(Image *im, guint i, const char *blob_want, const char *blob_got, const char *diff_want,
                      const char *diff_got);
int image_take_layer(Image *im, guint i, BlobReader *r, const char *blob_want, const char *diff_want);
int image_publish(Image *im);

/* image-manifest.c */
void image_hex_of(GChecksum *c, char out[65]);
const char *image_digest_hex(Image *im, const char *digest, const char *what);
JsonNode *image_parse_json(Image *im, GBytes *bytes, const char *what);
const char *image_obj_string(JsonObject *o, const char *name);
JsonObject *image_obj_object(JsonObject *o, const char *name);
JsonArray *image_obj_array(JsonObject *o, const char *name);
gint64 image_obj_int(JsonObject *o, const char *name);
void image_host_platform(char **os, char **arch, char **variant);
GPtrArray *image_config_diff_ids(Image *im, JsonObject *config, guint n_layers);
int image_check_platform(Image *im, JsonObject *config);
int image_read_oci(Image *im, GBytes *index_bytes, LayerFunc layer);

/* image-layout.c */
int image_read_layout(Image *im);

/* image-archive.c */
void image_small_free(gpointer p);
void image_large_free(gpointer p);
int image_read_archive(Image *im);
