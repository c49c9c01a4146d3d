// packed16.wgsl: exact decoding of elements stored as f32 bits (dtype 0) or as 16-bit values
// packed two per u32 word, f16 (dtype 1) or bf16 (dtype 2), the way safetensors stores them.
// Included by the kernels that read weights; `dtype` is an override constant there, so the
// branches fold away. Reference: f16BitsToFloat / bf16BitsToFloat in src/dtype.ts.

// f16 bits (low 16 bits of h) to f32 bits, exactly: specials keep their class, subnormals their value.
fn f16_to_f32_bits(h: u32) -> u32 {
  let sign = (h & 0x8000u) << 16u;
  let exponent = (h >> 10u) & 0x1fu;
  let mantissa = h & 0x3ffu;
  if (exponent == 0x1fu) {
    return sign | 0x7f800000u | (mantissa << 13u);
  }
  if (exponent == 0u) {
    return sign | bitcast<u32>(f32(mantissa) * 5.9604644775390625e-8);   // mantissa · 2^-24
  }
  return sign | ((exponent + 112u) << 23u) | (mantissa << 13u);
}

// Index of the u32 word that holds element e.
fn packed_word(e: u32, dtype: u32) -> u32 {
  return select(e >> 1u, e, dtype == 0u);
}

// f32 bits of element e, given the word that holds it.
fn packed_bits(word: u32, e: u32, dtype: u32) -> u32 {
  if (dtype == 0u) {
    return word;
  }
  let h = (word >> ((e & 1u) * 16u)) & 0xffffu;
  if (dtype == 2u) {
    return h << 16u;
  }
  return f16_to_f32_bits(h);
}
