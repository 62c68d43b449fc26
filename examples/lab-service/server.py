#!/usr/bin/env python3
"""The seed lab's Service B ("Service B - ML Prediction"), as the lab wrote it: a
FastAPI model server with POST /predict {"input": str}. warren's README runs it as
"a model server you already have" and puts it behind warren's queue with an `http`
model (examples/models/lab/config.yaml).

Run: /usr/bin/python3 examples/lab-service/server.py [--port 8090]
(Debian's python3-fastapi and python3-uvicorn.)
"""

import argparse
import logging
import random

import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel

logging.basicConfig(level=logging.INFO, format="%(asctime)s - %(name)s - %(levelname)s - %(message)s")
logger = logging.getLogger("service_b")

app = FastAPI(title="Service B - ML Prediction")


class PredictionInput(BaseModel):
    input: str


class SimpleMlModel:
    """The lab's toy: a random class and confidence, whatever the input means."""

    classes = ["cat", "dog", "bird", "fish", "rabbit"]

    def predict(self, text: str) -> dict:
        cls = random.choice(self.classes)
        return {"class": cls, "confidence": round(random.uniform(0.7, 0.99), 2), "input_length": len(text)}


model = SimpleMlModel()
logger.info("ML model initialized")


@app.get("/")
async def root():
    return {"service": "Service B - ML Prediction", "status": "running"}


@app.get("/health")
async def health():
    return {"service": "Service B", "status": "healthy"}


@app.post("/predict")
async def predict(data: PredictionInput):
    # Inputs may be private: the lab logged them; this copy logs their size only.
    logger.info("Received prediction request (%d characters)", len(data.input))
    prediction = model.predict(data.input)
    return {
        "prediction": prediction,
        "message": f"Predicted class: {prediction['class']} with {prediction['confidence'] * 100:.1f}% confidence",
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
