"""Forms for the page posts; the services do the real validation and the writes."""

from django import forms

from .models import Dataset, LabelClass, Role


class DatasetForm(forms.Form):
    name = forms.CharField(max_length=Dataset._meta.get_field("name").max_length)
    description = forms.CharField(required=False, max_length=10_000, widget=forms.Textarea(attrs={"rows": 3}))
    auto_retrain = forms.BooleanField(required=False)


class MemberAddForm(forms.Form):
    username = forms.CharField(max_length=150)
    role = forms.ChoiceField(choices=Role.choices, initial=Role.ANNOTATOR)


class MemberRoleForm(forms.Form):
    role = forms.ChoiceField(choices=Role.choices)


class LabelClassForm(forms.Form):
    name = forms.CharField(max_length=LabelClass._meta.get_field("name").max_length)
    color = forms.RegexField(
        regex=r"^#[0-9a-fA-F]{6}$",
        required=False,
        widget=forms.TextInput(attrs={"type": "color"}),
        error_messages={"invalid": "Pick a color like #1f77b4."},
    )
    shortcut = forms.CharField(
        required=False,
        max_length=1,
        strip=False,
        help_text="One key that applies this class on the map, grid and image pages.",
    )

    def cleaned_fields(self) -> dict:
        data = self.cleaned_data
        return {"name": data["name"], "color": data.get("color") or None, "shortcut": data.get("shortcut") or ""}
