"""Register a pretrained backbone file for a dataset from the shell (as POST /api/datasets/{id}/backbones/).

    manage.py register_backbone DATASET FILE --name dinov2-vits14 --input-size 224,224
                                --mean 0.485,0.456,0.406 --std 0.229,0.224,0.225 [--format pt2|torchscript]

DATASET is a dataset id or its exact name.  The file is checked exactly as the
API checks it (loads without unpickling, a forward pass gives N x D finite floats).
"""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from core.errors import ServiceError
from embeddings.selectors.backbones import backbone_describe
from embeddings.services.backbones import backbone_register, max_backbone_bytes
from labeling.models import Dataset


class Command(BaseCommand):
    help = "Register a pretrained model file (torch.export .pt2 or TorchScript) as a backbone of a dataset."

    def add_arguments(self, parser):
        parser.add_argument("dataset", help="dataset id or exact name")
        parser.add_argument("file", help="the model file (torch.export.save or torch.jit.save output)")
        parser.add_argument("--name", required=True)
        parser.add_argument("--input-size", required=True, help="height,width (or one number for a square)")
        parser.add_argument("--mean", required=True, help="per channel, e.g. 0.485,0.456,0.406")
        parser.add_argument("--std", required=True, help="per channel, e.g. 0.229,0.224,0.225")
        parser.add_argument("--channels", type=int, default=None, help="1 or 3 (default: as many as --mean has)")
        parser.add_argument("--format", choices=["pt2", "torchscript"], default=None, help="inferred when absent")

    def handle(self, *args, **options):
        ref = options["dataset"]
        dataset = Dataset.objects.filter(pk=int(ref)).first() if ref.isdigit() else None
        dataset = dataset or Dataset.objects.filter(name=ref).first()
        if dataset is None:
            raise CommandError(f"No dataset {ref!r}.")
        path = Path(options["file"])
        if not path.is_file():
            raise CommandError(f"No file {path}.")
        if path.stat().st_size > max_backbone_bytes():
            raise CommandError(f"{path} is larger than SIMLABEL_MAX_BACKBONE_BYTES ({max_backbone_bytes()} bytes).")
        try:
            backbone = backbone_register(
                dataset=dataset,
                user=None,
                name=options["name"],
                data=path.read_bytes(),
                fmt=options["format"],
                input_size=options["input_size"],
                mean=options["mean"],
                std=options["std"],
                channels=options["channels"],
            )
        except ServiceError as exc:
            raise CommandError(exc.message) from None
        info = backbone_describe(backbone)
        self.stdout.write(
            f"backbone {info['id']} {info['name']!r} registered for dataset {dataset.pk}: {info['format']}, "
            f"input {info['input_size'][0]}x{info['input_size'][1]}, {info['dim']} values per image"
        )
