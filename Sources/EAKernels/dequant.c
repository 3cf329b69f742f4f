/* Dequantizers for the GGUF (ggml) tensor types. Bit layouts follow ggml's block structs; each
 * function decodes whole blocks to float32. Checked against the PyPI `gguf` package's dequantizers. */
#include "ea_kernels.h"
#include <string.h>

static inline float f16(const uint8_t *p) { return eak_f16_to_f32((uint16_t)(p[0] | (p[1] << 8))); }
static inline uint32_t u32le(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

uint32_t eak_type_block_elems(int type) {
    switch (type) {
    case EAK_F32: case EAK_F16: case EAK_BF16: case EAK_I8: return 1;
    case EAK_Q4_0: case EAK_Q4_1: case EAK_Q5_0: case EAK_Q5_1: case EAK_Q8_0: case EAK_Q8_1: return 32;
    case EAK_Q2_K: case EAK_Q3_K: case EAK_Q4_K: case EAK_Q5_K: case EAK_Q6_K: case EAK_Q8_K: return 256;
    default: return 0;
    }
}

uint32_t eak_type_block_bytes(int type) {
    switch (type) {
    case EAK_F32: return 4;
    case EAK_I8: return 1;
    case EAK_F16: case EAK_BF16: return 2;
    case EAK_Q4_0: return 18;
    case EAK_Q4_1: return 20;
    case EAK_Q5_0: return 22;
    case EAK_Q5_1: return 24;
    case EAK_Q8_0: return 34;
    case EAK_Q8_1: return 36;
    case EAK_Q2_K: return 84;
    case EAK_Q3_K: return 110;
    case EAK_Q4_K: return 144;
    case EAK_Q5_K: return 176;
    case EAK_Q6_K: return 210;
    case EAK_Q8_K: return 292;
    default: return 0;
    }
}

/* 6-bit scale and min j of a Q4_K/Q5_K super-block (12 packed bytes). */
static inline void scale_min_k4(int j, const uint8_t *q, uint8_t *d, uint8_t *m) {
    if (j < 4) {
        *d = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *d = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

static void deq_q2_k(const uint8_t *b, float *y) {
    const uint8_t *scales = b, *q = b + 16;
    float d = f16(b + 80), dmin = f16(b + 82);
    int is = 0;
    for (int n = 0; n < 256; n += 128) {
        int shift = 0;
        for (int j = 0; j < 4; ++j) {
            uint8_t sc = scales[is++];
            float dl = d * (sc & 0xF), ml = dmin * (sc >> 4);
            for (int l = 0; l < 16; ++l) *y++ = dl * ((q[l] >> shift) & 3) - ml;
            sc = scales[is++];
            dl = d * (sc & 0xF); ml = dmin * (sc >> 4);
            for (int l = 0; l < 16; ++l) *y++ = dl * ((q[l + 16] >> shift) & 3) - ml;
            shift += 2;
        }
        q += 32;
    }
}

static void deq_q3_k(const uint8_t *b, float *y) {
    const uint8_t *hm = b, *q = b + 32;
    float d_all = f16(b + 108);
    uint32_t aux[4];
    memcpy(aux, b + 96, 12);
    const uint32_t kmask1 = 0x03030303, kmask2 = 0x0f0f0f0f;
    uint32_t tmp = aux[2];
    aux[2] = ((aux[0] >> 4) & kmask2) | (((tmp >> 4) & kmask1) << 4);
    aux[3] = ((aux[1] >> 4) & kmask2) | (((tmp >> 6) & kmask1) << 4);
    aux[0] = (aux[0] & kmask2) | (((tmp >> 0) & kmask1) << 4);
    aux[1] = (aux[1] & kmask2) | (((tmp >> 2) & kmask1) << 4);
    const int8_t *scales = (const int8_t *)aux;
    int is = 0;
    uint8_t m = 1;
    for (int n = 0; n < 256; n += 128) {
        int shift = 0;
        for (int j = 0; j < 4; ++j) {
            float dl = d_all * (scales[is++] - 32);
            for (int l = 0; l < 16; ++l)
                *y++ = dl * ((int8_t)((q[l] >> shift) & 3) - ((hm[l] & m) ? 0 : 4));
            dl = d_all * (scales[is++] - 32);
            for (int l = 0; l < 16; ++l)
                *y++ = dl * ((int8_t)((q[l + 16] >> shift) & 3) - ((hm[l + 16] & m) ? 0 : 4));
            shift += 2;
            m <<= 1;
        }
        q += 32;
    }
}

static void deq_q4_k(const uint8_t *b, float *y) {
    float d = f16(b), dmin = f16(b + 2);
    const uint8_t *scales = b + 4, *q = b + 16;
    int is = 0;
    for (int j = 0; j < 256; j += 64) {
        uint8_t sc, m;
        scale_min_k4(is + 0, scales, &sc, &m);
        float d1 = d * sc, m1 = dmin * m;
        scale_min_k4(is + 1, scales, &sc, &m);
        float d2 = d * sc, m2 = dmin * m;
        for (int l = 0; l < 32; ++l) *y++ = d1 * (q[l] & 0xF) - m1;
        for (int l = 0; l < 32; ++l) *y++ = d2 * (q[l] >> 4) - m2;
        q += 32;
        is += 2;
    }
}

static void deq_q5_k(const uint8_t *b, float *y) {
    float d = f16(b), dmin = f16(b + 2);
    const uint8_t *scales = b + 4, *qh = b + 16, *ql = b + 48;
    int is = 0;
    uint8_t u1 = 1, u2 = 2;
    for (int j = 0; j < 256; j += 64) {
        uint8_t sc, m;
        scale_min_k4(is + 0, scales, &sc, &m);
        float d1 = d * sc, m1 = dmin * m;
        scale_min_k4(is + 1, scales, &sc, &m);
        float d2 = d * sc, m2 = dmin * m;
        for (int l = 0; l < 32; ++l) *y++ = d1 * ((ql[l] & 0xF) + ((qh[l] & u1) ? 16 : 0)) - m1;
        for (int l = 0; l < 32; ++l) *y++ = d2 * ((ql[l] >> 4) + ((qh[l] & u2) ? 16 : 0)) - m2;
        ql += 32;
        is += 2;
        u1 <<= 2;
        u2 <<= 2;
    }
}

static void deq_q6_k(const uint8_t *b, float *y) {
    const uint8_t *ql = b, *qh = b + 128;
    const int8_t *sc = (const int8_t *)(b + 192);
    float d = f16(b + 208);
    for (int n = 0; n < 256; n += 128) {
        for (int l = 0; l < 32; ++l) {
            int is = l / 16;
            int q1 = (int8_t)((ql[l + 0] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
            int q2 = (int8_t)((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
            int q3 = (int8_t)((ql[l + 0] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
            int q4 = (int8_t)((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
            y[l + 0] = d * sc[is + 0] * q1;
            y[l + 32] = d * sc[is + 2] * q2;
            y[l + 64] = d * sc[is + 4] * q3;
            y[l + 96] = d * sc[is + 6] * q4;
        }
        y += 128;
        ql += 64;
        qh += 32;
        sc += 8;
    }
}

int eak_dequantize(int type, const void *src, float *dst, int64_t n) {
    uint32_t be = eak_type_block_elems(type), bb = eak_type_block_bytes(type);
    if (be == 0 || n < 0 || n % be != 0) return -1;
    const uint8_t *p = (const uint8_t *)src;
    int64_t nb = n / be;
    switch (type) {
    case EAK_F32: memcpy(dst, src, (size_t)n * 4); return 0;
    case EAK_F16: for (int64_t i = 0; i < n; ++i) dst[i] = f16(p + 2 * i); return 0;
    case EAK_I8: for (int64_t i = 0; i < n; ++i) dst[i] = (float)(int8_t)p[i]; return 0;
    case EAK_BF16:
        for (int64_t i = 0; i < n; ++i) {
            uint32_t bits = (uint32_t)(p[2 * i] | (p[2 * i + 1] << 8)) << 16;
            memcpy(dst + i, &bits, 4);
        }
        return 0;
    default: break;
    }
    for (int64_t ib = 0; ib < nb; ++ib, p += bb, dst += be) {
        switch (type) {
        case EAK_Q4_0: {
            float d = f16(p);
            for (int j = 0; j < 16; ++j) {
                dst[j] = ((p[2 + j] & 0xF) - 8) * d;
                dst[j + 16] = ((p[2 + j] >> 4) - 8) * d;
            }
        } break;
        case EAK_Q4_1: {
            float d = f16(p), m = f16(p + 2);
            for (int j = 0; j < 16; ++j) {
                dst[j] = (p[4 + j] & 0xF) * d + m;
                dst[j + 16] = (p[4 + j] >> 4) * d + m;
            }
        } break;
        case EAK_Q5_0: {
            float d = f16(p);
            uint32_t qh = u32le(p + 2);
            for (int j = 0; j < 16; ++j) {
                uint8_t h0 = (uint8_t)(((qh >> j) << 4) & 0x10), h1 = (uint8_t)((qh >> (j + 12)) & 0x10);
                dst[j] = (((p[6 + j] & 0xF) | h0) - 16) * d;
                dst[j + 16] = (((p[6 + j] >> 4) | h1) - 16) * d;
            }
        } break;
        case EAK_Q5_1: {
            float d = f16(p), m = f16(p + 2);
            uint32_t qh = u32le(p + 4);
            for (int j = 0; j < 16; ++j) {
                uint8_t h0 = (uint8_t)(((qh >> j) << 4) & 0x10), h1 = (uint8_t)((qh >> (j + 12)) & 0x10);
                dst[j] = ((p[8 + j] & 0xF) | h0) * d + m;
                dst[j + 16] = ((p[8 + j] >> 4) | h1) * d + m;
            }
        } break;
        case EAK_Q8_0: {
            float d = f16(p);
            for (int j = 0; j < 32; ++j) dst[j] = (int8_t)p[2 + j] * d;
        } break;
        case EAK_Q8_1: {
            float d = f16(p);
            for (int j = 0; j < 32; ++j) dst[j] = (int8_t)p[4 + j] * d;
        } break;
        case EAK_Q2_K: deq_q2_k(p, dst); break;
        case EAK_Q3_K: deq_q3_k(p, dst); break;
        case EAK_Q4_K: deq_q4_k(p, dst); break;
        case EAK_Q5_K: deq_q5_k(p, dst); break;
        case EAK_Q6_K: deq_q6_k(p, dst); break;
        case EAK_Q8_K: {
            float d;
            memcpy(&d, p, 4);
            for (int j = 0; j < 256; ++j) dst[j] = (int8_t)p[4 + j] * d;
        } break;
        default: return -1;
        }
    }
    return 0;
}
