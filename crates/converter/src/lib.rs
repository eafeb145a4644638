//! Will own the conversion of `.vrec` recordings (read through `recorder`)
//! into MP4 and AVI with ffmpeg-next. Nothing here yet: conversion is issue 6.
#![forbid(unsafe_code)]
