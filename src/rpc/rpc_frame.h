/*
 * rpc_frame.h — the wire format of the node-to-node RPC transport (src/rpc/rpc.h): a fixed
 * 28-byte header followed by the payload, and the HELLO payload that opens every connection.
 *
 * Header (big-endian):
 *     0  u32 magic        RPC_MAGIC ("ALRP")
 *     4  u8  version      RPC_VERSION (frames of any other version are refused)
 *     5  u8  flags        RPC_F_*
 *     6  u16 type         message type (RPC_T_*; handlers are registered per type)
 *     8  u64 correlation  0 for one-way messages; matches a response to its request
 *    16  u32 length       payload bytes that follow the header
 *    20  u32 payload_crc  CRC32C of the payload
 *    24  u32 header_crc   CRC32C of bytes 0..23
 *
 * The header checksum is verified before the length is believed, so a stream that lost sync
 * (or garbage from a stranger) is refused at its first 28 bytes instead of making the reader
 * wait for, or allocate, a bogus length. Decoding is pure and bounds-checked: safe on any
 * bytes (fuzzed by tests/fuzz/fuzz_rpc_frame.c).
 */
#ifndef AL_RPC_FRAME_H
#define AL_RPC_FRAME_H

#include "base/base.h"

#define RPC_MAGIC       0x414c5250u /* "ALRP" */
#define RPC_VERSION     1u
#define RPC_HDR_SIZE    28u
#define RPC_MAX_FRAME_DEFAULT (128u * 1024 * 1024) /* payload bytes */

enum rpc_flags {
    RPC_F_REQUEST = 1u << 0,  /* a call: the receiver answers with RPC_F_RESPONSE */
    RPC_F_RESPONSE = 1u << 1, /* the answer to the request with the same correlation id */
    RPC_F_ERROR = 1u << 2,    /* with RESPONSE: the payload is an error (rpc_error_decode) */
    RPC_F_KNOWN = RPC_F_REQUEST | RPC_F_RESPONSE | RPC_F_ERROR,
};

/* Message types. 0 is invalid; 1..15 belong to the transport; the rest to its users. Types
 * are below RPC_T_MAX (handlers live in a flat table). */
enum rpc_type {
    RPC_T_HELLO = 1,      /* the first request on every connection (rpc_hello) */
    RPC_T_PING = 2,       /* keepalive request on an idle connection; answered at once */
    RPC_T_RAFT = 16,      /* one raft_msg (raft_msg_encode), one-way */
    RPC_T_RAFT_HB = 17,   /* a RAFT_MSG_HB_BATCH raft_msg, one-way */
    RPC_T_JOIN = 18,      /* cluster join request (call) */
    RPC_T_CONTROLLER = 19,/* a request forwarded to the controller leader (call) */
    RPC_T_USER = 32,      /* first free type (tests use these) */
    RPC_T_MAX = 256
};

typedef struct rpc_hdr {
    uint8_t version;
    uint8_t flags;
    uint16_t type;
    uint64_t corr;
    uint32_t len;
    uint32_t payload_crc;
} rpc_hdr;

/* Writes the 28-byte header for a payload (computes both checksums) into out. */
void rpc_hdr_encode(uint8_t out[RPC_HDR_SIZE], uint8_t flags, uint16_t type, uint64_t corr,
                    const void *payload, uint32_t len);

/*
 * Looks for one complete frame at the start of buf[0..len). max_payload bounds the length
 * field (0 means RPC_MAX_FRAME_DEFAULT).
 * Returns:
 *   > 0  the whole frame's size (header + payload); *hdr is filled and the payload is
 *        buf + RPC_HDR_SIZE, its checksum verified;
 *   0    more bytes are needed; if at least a header is present, *hdr is filled (so the caller
 *        can size its buffer for RPC_HDR_SIZE + hdr->len);
 *   AL_EMALFORMED  bad magic, or flags with unknown bits / RESPONSE with REQUEST;
 *   AL_EUNSUPPORTED a protocol version other than RPC_VERSION;
 *   AL_ECORRUPT    header or payload checksum mismatch;
 *   AL_ETOOLARGE   length over max_payload;
 *   AL_EINVAL      type 0 or >= RPC_T_MAX.
 * Any error means the byte stream cannot be trusted any more: close the connection.
 */
int64_t rpc_frame_decode(const uint8_t *buf, size_t len, size_t max_payload, rpc_hdr *hdr);

/* ---- HELLO ---- */

#define RPC_CLUSTER_ID_MAX 64
#define RPC_ADDR_MAX       96

/* The HELLO payload, in both directions (request: the caller; response: the callee). */
typedef struct rpc_hello {
    uint16_t min_version, max_version;  /* protocol versions the sender speaks */
    int32_t node_id;                    /* -1: not assigned yet (a node joining) */
    char cluster_id[RPC_CLUSTER_ID_MAX + 1]; /* "" when not known yet */
    char addr[RPC_ADDR_MAX + 1];        /* the sender's advertised rpc address host:port */
} rpc_hello;

/* Bytes rpc_hello_encode writes (at most). */
#define RPC_HELLO_MAX_SIZE (2 + 2 + 4 + 2 + RPC_CLUSTER_ID_MAX + 2 + RPC_ADDR_MAX)

/* Encodes h into buf[0..cap). Returns the size, or AL_ETOOLARGE. */
int rpc_hello_encode(const rpc_hello *h, uint8_t *buf, size_t cap);
/* Decodes a HELLO payload. Returns 0, AL_ETRUNCATED, or AL_EMALFORMED (strings too long or
 * holding NUL bytes, min > max). Trailing bytes are allowed (later versions may add fields). */
int rpc_hello_decode(const uint8_t *buf, size_t len, rpc_hello *out);

/* An error response payload: i32 error code (an AL_E* or -errno value) + u16 text length +
 * text. */
int rpc_error_encode(int err, const char *text, uint8_t *buf, size_t cap);
/* Decodes an error payload; *err is the code (AL_EMALFORMED if the payload is bad, or if the
 * code is not negative), text (NUL-terminated, truncated to cap) may be NULL. Returns 0 or
 * AL_EMALFORMED. */
int rpc_error_decode(const uint8_t *buf, size_t len, int *err, char *text, size_t text_cap);

#endif
