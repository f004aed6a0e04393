"""Pipecat's side of the side-by-side bench: a Twilio media-stream loopback bot.

One FastAPI websocket per call at /twilio/media (the path Switchboard serves), speaking Twilio's
media-stream protocol through Pipecat's own TwilioFrameSerializer. Per call, one Pipecat pipeline:

    transport.input()   μ-law 8 kHz → 16 kHz PCM (serializer), RNNoise (audio_in_filter)
    → VADProcessor      Silero VAD (Pipecat's bundled ONNX model, one analyzer per call)
    → Loopback          every InputAudioRawFrame becomes an OutputAudioRawFrame
    → transport.output()  16 kHz → μ-law 8 kHz, paced by Pipecat's output transport

which is the path of Switchboard's `mode=loopback` + `listen=true`: decode, resample, denoise, VAD,
play the caller's audio back. Pipecat's defaults are kept everywhere else.

    python server.py --port 8766   (from the venv made by setup.sh)
"""

import argparse
import json
import logging
import sys

import uvicorn
from fastapi import FastAPI, WebSocket
from loguru import logger
from pipecat.audio.filters.rnnoise_filter import RNNoiseFilter
from pipecat.audio.vad.silero import SileroVADAnalyzer
from pipecat.frames.frames import (
    Frame,
    InputAudioRawFrame,
    OutputAudioRawFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.task import PipelineParams
from pipecat.pipeline.worker import PipelineWorker
from pipecat.processors.audio.vad_processor import VADProcessor
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.serializers.twilio import TwilioFrameSerializer
from pipecat.transports.websocket.fastapi import FastAPIWebsocketParams, FastAPIWebsocketTransport
from pipecat.workers.runner import WorkerRunner

PIPELINE_RATE_HZ = 16000

app = FastAPI()
stats = {"calls_started": 0, "calls_ended": 0, "speech_started": 0, "speech_ended": 0}


class Loopback(FrameProcessor):
    """Plays the caller's (filtered) audio back; counts the VAD's speech events."""

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        await super().process_frame(frame, direction)
        if isinstance(frame, InputAudioRawFrame):
            await self.push_frame(
                OutputAudioRawFrame(
                    audio=frame.audio, sample_rate=frame.sample_rate, num_channels=frame.num_channels
                )
            )
            return
        if isinstance(frame, VADUserStartedSpeakingFrame):
            stats["speech_started"] += 1
        elif isinstance(frame, VADUserStoppedSpeakingFrame):
            stats["speech_ended"] += 1
        await self.push_frame(frame, direction)


@app.get("/stats")
async def get_stats():
    return stats


@app.websocket("/twilio/media")
async def media(websocket: WebSocket):
    await websocket.accept()
    # Twilio sends `connected`, then `start` (stream and call ids); the pipeline takes the rest.
    start = None
    while start is None:
        message = json.loads(await websocket.receive_text())
        if message.get("event") == "start":
            start = message["start"]
    serializer = TwilioFrameSerializer(
        stream_sid=start["streamSid"],
        call_sid=start.get("callSid"),
        params=TwilioFrameSerializer.InputParams(auto_hang_up=False),
    )
    transport = FastAPIWebsocketTransport(
        websocket=websocket,
        params=FastAPIWebsocketParams(
            audio_in_enabled=True,
            audio_out_enabled=True,
            audio_in_filter=RNNoiseFilter(),
            add_wav_header=False,
            serializer=serializer,
        ),
    )
    pipeline = Pipeline(
        [
            transport.input(),
            VADProcessor(vad_analyzer=SileroVADAnalyzer()),
            Loopback(),
            transport.output(),
        ]
    )
    worker = PipelineWorker(
        pipeline,
        params=PipelineParams(
            audio_in_sample_rate=PIPELINE_RATE_HZ, audio_out_sample_rate=PIPELINE_RATE_HZ
        ),
    )

    @transport.event_handler("on_client_disconnected")
    async def on_client_disconnected(_transport, _client):
        await worker.cancel()

    stats["calls_started"] += 1
    try:
        runner = WorkerRunner(handle_sigint=False)
        await runner.add_workers(worker)
        await runner.run()
    finally:
        stats["calls_ended"] += 1


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8766)
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args()
    # Warn level, as the Switchboard side runs.
    logger.remove()
    logger.add(sys.stderr, level=args.log_level)
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level.lower(), ws="websockets-sansio")


if __name__ == "__main__":
    main()
