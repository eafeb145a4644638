//! Will own screen capture sources, the lossless tile codec, and the `.vrec`
//! recording writer, reader and crash recovery. Nothing here yet: recordings
//! are issue 5.
#![forbid(unsafe_code)]
