/* The wire format between ember-faas (host) and ember-faas-agent (guest) over vsock;
 * PROTOCOL.md describes it. Plain C so the static guest agent and the C++ daemon share
 * one encoder and one decoder. All integers are little-endian. */
#ifndef EMBER_FAAS_PROTOCOL_H
#define EMBER_FAAS_PROTOCOL_H

#include <stddef.h>
#include <stdint.h>

#define FAAS_AGENT_PORT 52u
#define FAAS_REQUEST_MAGIC 0x31514645u  /* "EFQ1" */
#define FAAS_REPLY_MAGIC 0x31524645u    /* "EFR1" */
#define FAAS_REQUEST_HEADER_BYTES 16u
#define FAAS_REPLY_HEADER_BYTES 24u
/* Bounds, each checked by the decoder before anything is allocated. */
#define FAAS_MAX_HANDLER_BYTES 4096u
#define FAAS_MAX_BODY_BYTES (8u << 20)
#define FAAS_MAX_OUTPUT_BYTES (1u << 20)
#define FAAS_MAX_TIMEOUT_MS 3600000u

/* handler_len 0 is a ping: the agent answers FAAS_PONG without running anything. */
struct faas_request {
  uint32_t timeout_ms;
  uint32_t handler_len;
  uint32_t body_len;
};

enum faas_outcome {
  FAAS_EXITED = 0,        /* status: the exit code */
  FAAS_SIGNALED = 1,      /* status: the signal number */
  FAAS_TIMED_OUT = 2,     /* killed at timeout_ms */
  FAAS_SPAWN_FAILED = 3,  /* status: errno */
  FAAS_BAD_REQUEST = 4,   /* the request header was refused; status: a faas_decode_error */
  FAAS_PONG = 5,
};
#define FAAS_FLAG_TRUNCATED 1u /* the handler wrote more than FAAS_MAX_OUTPUT_BYTES */

struct faas_reply {
  uint32_t outcome;
  int32_t status;
  uint32_t flags;
  uint32_t run_us;   /* from fork to the handler's end (or its kill) */
  uint32_t output_len;
};

enum faas_decode_error {
  FAAS_DECODE_OK = 0,
  FAAS_DECODE_SHORT = 1,     /* fewer bytes than a header */
  FAAS_DECODE_MAGIC = 2,     /* not this protocol or version */
  FAAS_DECODE_TOO_LARGE = 3, /* a length or the timeout over its bound */
  FAAS_DECODE_INVALID = 4,   /* an outcome or flag this version does not know */
};

static inline void faas_put32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); p[2] = (uint8_t)(v >> 16); p[3] = (uint8_t)(v >> 24);
}
static inline uint32_t faas_get32(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline void faas_encode_request(const struct faas_request *r, uint8_t out[FAAS_REQUEST_HEADER_BYTES]) {
  faas_put32(out, FAAS_REQUEST_MAGIC);
  faas_put32(out + 4, r->timeout_ms);
  faas_put32(out + 8, r->handler_len);
  faas_put32(out + 12, r->body_len);
}

static inline enum faas_decode_error faas_decode_request(const uint8_t *in, size_t len, struct faas_request *r) {
  if (len < FAAS_REQUEST_HEADER_BYTES) return FAAS_DECODE_SHORT;
  if (faas_get32(in) != FAAS_REQUEST_MAGIC) return FAAS_DECODE_MAGIC;
  r->timeout_ms = faas_get32(in + 4);
  r->handler_len = faas_get32(in + 8);
  r->body_len = faas_get32(in + 12);
  if (r->timeout_ms > FAAS_MAX_TIMEOUT_MS || r->handler_len > FAAS_MAX_HANDLER_BYTES ||
      r->body_len > FAAS_MAX_BODY_BYTES)
    return FAAS_DECODE_TOO_LARGE;
  return FAAS_DECODE_OK;
}

static inline void faas_encode_reply(const struct faas_reply *r, uint8_t out[FAAS_REPLY_HEADER_BYTES]) {
  faas_put32(out, FAAS_REPLY_MAGIC);
  faas_put32(out + 4, r->outcome);
  faas_put32(out + 8, (uint32_t)r->status);
  faas_put32(out + 12, r->flags);
  faas_put32(out + 16, r->run_us);
  faas_put32(out + 20, r->output_len);
}

static inline enum faas_decode_error faas_decode_reply(const uint8_t *in, size_t len, struct faas_reply *r) {
  if (len < FAAS_REPLY_HEADER_BYTES) return FAAS_DECODE_SHORT;
  if (faas_get32(in) != FAAS_REPLY_MAGIC) return FAAS_DECODE_MAGIC;
  r->outcome = faas_get32(in + 4);
  r->status = (int32_t)faas_get32(in + 8);
  r->flags = faas_get32(in + 12);
  r->run_us = faas_get32(in + 16);
  r->output_len = faas_get32(in + 20);
  if (r->output_len > FAAS_MAX_OUTPUT_BYTES) return FAAS_DECODE_TOO_LARGE;
  if (r->outcome > FAAS_PONG || (r->flags & ~FAAS_FLAG_TRUNCATED)) return FAAS_DECODE_INVALID;
  return FAAS_DECODE_OK;
}

#endif
